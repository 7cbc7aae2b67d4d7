//! SIGTERM and SIGINT → one [`CancellationToken`], cloned into the server and the engine.
//! Tests cancel the token directly instead.

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or SIGINT, then says so: once the line is
/// logged, /readyz answers 503 and new work is refused.
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let name = wait_for_signal().await;
        token.cancel();
        tracing::info!(signal = name, "shutdown requested: draining");
    });
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        unreachable!()
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "ctrl-c"
}
