//! `tsockm-soak [--seconds N] [--seed S] [--cluster] [--nodes N]`: runs the
//! churn soak against an in-process server (or, with `--cluster`, against N
//! in-process nodes sharing a `redis-server` of the run's own; 3 by
//! default), prints the summary table, and exits non-zero on any violation.
//! `cargo xtask soak` runs it in release mode.

use std::process::ExitCode;
use std::time::Duration;

/// Length of a run when none is given.
const DEFAULT_SECONDS: u64 = 60;
/// Nodes of a `--cluster` run when `--nodes` is not given.
const DEFAULT_NODES: usize = 3;
/// Most nodes a run may ask for (every node is a server in this process).
const MAX_NODES: usize = 16;

const USAGE: &str = "usage: tsockm-soak [--seconds N] [--seed S] [--cluster] [--nodes N]";

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    seconds: u64,
    seed: Option<u64>,
    nodes: Option<usize>,
}

fn parse(args: &[String]) -> Option<Args> {
    let mut parsed = Args {
        seconds: DEFAULT_SECONDS,
        seed: None,
        nodes: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--cluster" => {
                parsed.nodes.get_or_insert(DEFAULT_NODES);
            }
            "--seconds" => parsed.seconds = it.next()?.parse().ok().filter(|n| *n > 0)?,
            "--seed" => parsed.seed = Some(it.next()?.parse().ok()?),
            "--nodes" => {
                let n: usize = it.next()?.parse().ok()?;
                parsed.nodes = Some(n).filter(|n| (1..=MAX_NODES).contains(n));
                parsed.nodes?;
            }
            _ => return None,
        }
    }
    Some(parsed)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(Args {
        seconds,
        seed,
        nodes,
    }) = parse(&args)
    else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let seed = seed.unwrap_or_else(tsockm_soak::seed_from_clock);
    let mut config = tsockm_soak::SoakConfig::new(Duration::from_secs(seconds), seed);
    let what = match nodes {
        Some(n) => {
            config = config.cluster(n);
            format!("across a cluster of {n} nodes")
        }
        None => "against one server".to_owned(),
    };
    let again = match nodes {
        Some(n) => format!("--cluster --nodes {n} --seed {seed}"),
        None => format!("--seed {seed}"),
    };
    println!("tsockm-soak: {seconds} s of churn {what}, seed {seed} (repeat with {again})");
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
        println!(
            "tsockm-soak: {} violations (seed {seed}, repeat with {again})",
            report.violations.len()
        );
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            parse(&args("--seconds 5 --seed 7")),
            Some(Args {
                seconds: 5,
                seed: Some(7),
                nodes: None
            })
        );
        assert_eq!(parse(&args("--cluster")).map(|a| a.nodes), Some(Some(3)));
        assert_eq!(
            parse(&args("--nodes 2 --cluster")).map(|a| a.nodes),
            Some(Some(2))
        );
        assert_eq!(parse(&args("--nodes 0")), None);
        assert_eq!(parse(&args("--seconds 0")), None);
        assert_eq!(parse(&args("--seed")), None);
        assert_eq!(parse(&args("--minutes 2")), None);
    }
}
