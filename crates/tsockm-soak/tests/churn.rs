//! The CI-sized churn soak: about 30 s of random clients against an
//! in-process server, every invariant of the crate checked. The seed is
//! printed; `TSOCKM_SOAK_SEED` repeats a run.

use std::time::Duration;

/// Seconds of churn (the wind-down adds a few).
const CHURN: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_soak_keeps_every_guarantee() {
    let seed = std::env::var("TSOCKM_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(tsockm_soak::seed_from_clock);
    println!("churn soak seed {seed} (repeat with TSOCKM_SOAK_SEED={seed})");
    let report = tokio::time::timeout(
        CHURN * 3,
        tsockm_soak::run(tsockm_soak::SoakConfig::new(CHURN, seed)),
    )
    .await
    .expect("the soak finishes in time");
    println!("{}", report.table());
    assert!(report.ok(), "seed {seed}:\n{}", report.table());
}
