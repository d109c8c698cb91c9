//! The CI-sized churn soak across a cluster: about 20 s of random clients
//! on two in-process nodes sharing a `redis-server` of the test's own,
//! every invariant of the crate checked across nodes (clients resume on
//! another node than the one they left). The seed is printed;
//! `TSOCKM_SOAK_SEED` repeats a run.
//!
//! Skips (with a notice) only when `redis-server` is missing and `CI` is
//! not set, like the server's cluster tests.

use std::time::Duration;

/// Seconds of churn (the wind-down adds a few).
const CHURN: Duration = Duration::from_secs(20);
/// Nodes of the cluster.
const NODES: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_churn_soak_keeps_every_guarantee() {
    if !tsockm_soak::redis::installed() {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server is not installed, and CI is set: the cluster soak must run"
        );
        eprintln!("notice: redis-server is not installed; the cluster churn soak is skipped");
        return;
    }
    let seed = std::env::var("TSOCKM_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(tsockm_soak::seed_from_clock);
    println!("cluster churn soak seed {seed} (repeat with TSOCKM_SOAK_SEED={seed})");
    let config = tsockm_soak::SoakConfig::new(CHURN, seed).cluster(NODES);
    let report = tokio::time::timeout(CHURN * 4, tsockm_soak::run(config))
        .await
        .expect("the soak finishes in time");
    println!("{}", report.table());
    assert!(report.ok(), "seed {seed}:\n{}", report.table());
}
