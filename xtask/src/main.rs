//! Project automation, run as `cargo xtask <task>` (the alias lives in
//! `.cargo/config.toml`). Each task is a plain function over `std::process`;
//! xtask depends on nothing, so it builds in seconds on a fresh machine.

mod bench;
mod ci;
mod fuzz;
mod soak;
#[cfg(test)]
mod tidy;

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <task>

tasks:
  bench [--quick]    TsockM beside ngircd: fan-out, rooms, idle and join-storm load
                     (see `bench --help`)
  bench --cluster    one server vs a cluster's nodes vs linked ngircds, same core
                     (see `bench --cluster --help`)
  ci                 rustfmt check, clippy (warnings denied), cargo test --workspace
  fuzz [SECONDS]     run every fuzz target for SECONDS each (default 60; nightly + cargo-fuzz)
  soak [--minutes N] [--seed S] [--cluster [--nodes N]]
                     churn soak against an in-process server (or N cluster nodes on a
                     redis-server of its own), invariants checked (default 2 minutes)";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::bench(&args[1..]),
        Some("ci") => ci::ci(),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("soak") => soak::soak(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (the parent of this crate's directory).
fn project_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

/// Runs `program args...` in the project root; an error names the command.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_with_env(program, args, &[])
}

/// [`run`] with extra environment variables.
fn run_with_env(program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let shown: Vec<String> = env.iter().map(|(k, v)| format!("{k}='{v}' ")).collect();
    eprintln!("$ {}{program} {}", shown.concat(), args.join(" "));
    let status = std::process::Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(project_root())
        .status()
        .map_err(|e| format!("cannot start `{program}`: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{program} {}` failed ({status})", args.join(" ")))
    }
}
