//! Turning SIGINT and SIGTERM into the server's one shutdown signal.

use tokio_util::sync::CancellationToken;

/// Cancels `shutdown` on the first SIGINT or SIGTERM (Ctrl-C elsewhere).
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = signal() => {}
    }
    tracing::info!("signal received: shutting down");
    shutdown.cancel();
}

#[cfg(unix)]
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            tracing::warn!("cannot listen for signals; use :exit to stop");
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(not(unix))]
async fn signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}
