//! `cargo xtask soak [--minutes N] [--seed S] [--cluster [--nodes N]]`: the
//! churn soak of `crates/tsockm-soak`, built in release mode and run for N
//! minutes (default 2). With `--cluster` the clients churn across N
//! in-process nodes (default 3) of a cluster sharing a `redis-server` the
//! soak starts on a free loopback port and kills at the end. It prints the
//! seed and a summary table and fails on any violation. The integration
//! tests `tsockm-soak/tests/churn.rs` (one server, 25 s) and
//! `tests/cluster_churn.rs` (two nodes, 20 s) run short versions in CI.

use crate::run;

/// Minutes of churn when none are given.
const DEFAULT_MINUTES: u64 = 2;
/// Nodes of a `--cluster` soak when `--nodes` is not given.
const DEFAULT_NODES: u64 = 3;

const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--seed S] [--cluster [--nodes N]]";

/// What `cargo xtask soak` was asked.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    minutes: u64,
    seed: Option<u64>,
    /// `Some(n)`: a cluster of n nodes.
    nodes: Option<u64>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        minutes: DEFAULT_MINUTES,
        seed: None,
        nodes: None,
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--cluster" {
            o.nodes.get_or_insert(DEFAULT_NODES);
            continue;
        }
        let value = iter.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--minutes", Some(n)) if n > 0 => o.minutes = n,
            ("--seed", Some(s)) => o.seed = Some(s),
            ("--nodes", Some(n)) if n > 0 => o.nodes = Some(n),
            _ => return Err(USAGE.to_owned()),
        }
    }
    Ok(o)
}

/// Runs the soak binary in release mode.
pub fn soak(args: &[String]) -> Result<(), String> {
    let o = parse(args)?;
    let seconds = (o.minutes * 60).to_string();
    let mut cargo_args: Vec<String> = [
        "run",
        "--release",
        "--quiet",
        "--package",
        "tsockm-soak",
        "--",
        "--seconds",
        &seconds,
    ]
    .map(String::from)
    .to_vec();
    if let Some(seed) = o.seed {
        cargo_args.extend(["--seed".to_owned(), seed.to_string()]);
    }
    if let Some(nodes) = o.nodes {
        cargo_args.extend(["--cluster", "--nodes"].map(String::from));
        cargo_args.push(nodes.to_string());
    }
    let refs: Vec<&str> = cargo_args.iter().map(String::as_str).collect();
    run("cargo", &refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn options() {
        assert_eq!(
            parse(&args("--minutes 5 --seed 9")),
            Ok(Options {
                minutes: 5,
                seed: Some(9),
                nodes: None
            })
        );
        assert_eq!(parse(&args("--cluster")).map(|o| o.nodes), Ok(Some(3)));
        assert_eq!(
            parse(&args("--cluster --nodes 2 --minutes 1")).map(|o| (o.nodes, o.minutes)),
            Ok((Some(2), 1))
        );
        assert!(parse(&args("--nodes 0")).is_err());
        assert!(parse(&args("--minutes")).is_err());
        assert!(parse(&args("--fast")).is_err());
    }
}
