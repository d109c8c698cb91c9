//! `tsockm-soak [--seconds N] [--seed S]`: runs the churn soak against an
//! in-process server, prints the summary table, and exits non-zero on any
//! violation. `cargo xtask soak --minutes N` runs it in release mode.

use std::process::ExitCode;
use std::time::Duration;

/// Length of a run when none is given.
const DEFAULT_SECONDS: u64 = 60;

const USAGE: &str = "usage: tsockm-soak [--seconds N] [--seed S]";

fn main() -> ExitCode {
    let mut seconds = DEFAULT_SECONDS;
    let mut seed = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed = match (arg.as_str(), value.as_deref().map(str::parse::<u64>)) {
            ("--seconds", Some(Ok(n))) if n > 0 => {
                seconds = n;
                Ok(())
            }
            ("--seed", Some(Ok(s))) => {
                seed = Some(s);
                Ok(())
            }
            _ => Err(()),
        };
        if parsed.is_err() {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    }
    let seed = seed.unwrap_or_else(tsockm_soak::seed_from_clock);
    let config = tsockm_soak::SoakConfig::new(Duration::from_secs(seconds), seed);
    println!("tsockm-soak: {seconds} s of churn, seed {seed} (repeat with --seed {seed})");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tsockm-soak: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(tsockm_soak::run(config));
    print!("{}", report.table());
    if report.ok() {
        println!("tsockm-soak: every invariant held");
        ExitCode::SUCCESS
    } else {
        println!("tsockm-soak: {} violations", report.violations.len());
        ExitCode::FAILURE
    }
}
