//! Turning SIGINT and SIGTERM into the server's one shutdown signal.

use std::future::Future;

use tokio_util::sync::CancellationToken;

/// Listens for SIGINT and SIGTERM (Ctrl-C elsewhere) from now on, and gives
/// the future that cancels `shutdown` on the first of them.
///
/// The listeners are installed before this returns, so a signal sent as
/// soon as the server says it listens is never the default "die at once":
/// call it (within the runtime) before printing that line, then spawn the
/// future.
pub fn cancel_on_signal(shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
    let signal = signal();
    async move {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = signal => {}
        }
        tracing::info!("signal received: shutting down");
        shutdown.cancel();
    }
}

#[cfg(unix)]
fn signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let listeners = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match listeners {
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
}

#[cfg(not(unix))]
fn signal() -> impl Future<Output = ()> + Send {
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
