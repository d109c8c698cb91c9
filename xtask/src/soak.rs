//! `cargo xtask soak [--minutes N] [--seed S]`: the churn soak of
//! `crates/tsockm-soak`, built in release mode and run for N minutes
//! (default 2). It prints a summary table and fails on any violation. The
//! integration test `tsockm-soak/tests/churn.rs` runs a 25 s version in CI.

use crate::run;

/// Minutes of churn when none are given.
const DEFAULT_MINUTES: u64 = 2;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--seed S]";

/// Runs the soak binary in release mode.
pub fn soak(args: &[String]) -> Result<(), String> {
    let mut minutes = DEFAULT_MINUTES;
    let mut seed = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = iter.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--minutes", Some(n)) if n > 0 => minutes = n,
            ("--seed", Some(s)) => seed = Some(s),
            _ => return Err(USAGE.to_owned()),
        }
    }
    let seconds = (minutes * 60).to_string();
    let mut cargo_args = vec![
        "run",
        "--release",
        "--quiet",
        "--package",
        "tsockm-soak",
        "--",
        "--seconds",
        &seconds,
    ];
    let seed_text = seed.map(|s| s.to_string());
    if let Some(seed) = &seed_text {
        cargo_args.extend(["--seed", seed]);
    }
    run("cargo", &cargo_args)
}
