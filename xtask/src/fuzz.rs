//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target under
//! `fuzz/fuzz_targets` for SECONDS each (default 60). Not part of CI: it
//! needs the nightly toolchain and cargo-fuzz, and it must never install
//! either by itself.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::{project_root, run};

/// How long each target runs when no duration is given, in seconds.
const DEFAULT_SECONDS: u64 = 60;

/// Runs each fuzz target in turn; stops at the first one that finds a crash.
pub fn fuzz(args: &[String]) -> Result<(), String> {
    let seconds = match args {
        [] => DEFAULT_SECONDS,
        [s] => s
            .parse::<u64>()
            .map_err(|_| format!("SECONDS must be a whole number, not `{s}`"))?,
        _ => return Err("usage: cargo xtask fuzz [SECONDS]".to_owned()),
    };
    check_cargo_fuzz()?;
    let targets = targets(&project_root().join("fuzz").join("fuzz_targets"))?;
    if targets.is_empty() {
        return Err("no fuzz targets under fuzz/fuzz_targets".to_owned());
    }
    let max_total_time = format!("-max_total_time={seconds}");
    for target in &targets {
        eprintln!("xtask: fuzzing `{target}` for {seconds} s");
        run(
            "cargo",
            &["+nightly", "fuzz", "run", target, "--", &max_total_time],
        )?;
    }
    eprintln!("xtask: {} target(s) fuzzed, no crash found", targets.len());
    Ok(())
}

/// Fails with installation hints unless `cargo +nightly fuzz` works.
fn check_cargo_fuzz() -> Result<(), String> {
    let works = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .current_dir(project_root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if works {
        Ok(())
    } else {
        Err("`cargo +nightly fuzz` is not available. Install it with:\n\
             \n    rustup toolchain install nightly    (if nightly is missing)\
             \n    cargo install cargo-fuzz"
            .to_owned())
    }
}

/// The names of the targets: the `.rs` files in `dir`, sorted.
fn targets(dir: &Path) -> Result<Vec<String>, String> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .path();
        if path.extension().is_some_and(|ext| ext == "rs")
            && let Some(stem) = path.file_stem().and_then(|s| s.to_str())
        {
            names.push(stem.to_owned());
        }
    }
    names.sort();
    Ok(names)
}
