//! The HTTP/1.1 server under the router (SPEC §9 "Slow and idle clients"): the accept
//! loop `axum::serve` would run, plus what `axum::serve` cannot be told.
//!
//! - **Header timeout.** A client must send its complete request headers within
//!   `--http-header-timeout-ms` (hyper's `header_read_timeout`); the same timer runs while
//!   a keep-alive connection waits for its next request, so idle connections close too.
//! - **Connection cap.** A permit is taken *before* accepting: beyond the cap, new
//!   connections wait in the kernel's accept queue and cost this process nothing. Half-sent
//!   requests hold a permit at most for the header timeout, and cost no thread meanwhile.
//! - **End of headers.** Each request is stamped with the moment its headers were parsed
//!   ([`HeadersReceived`]), from which [`extract`](super::extract) counts the body timeout.
//! - **Drain.** When `stop` is cancelled: no more accepting; idle connections close at
//!   once, busy ones finish their request and then close. [`serve`] returns when every
//!   connection is closed; the caller bounds that wait by the shutdown deadline.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::HttpLimits;

/// When a request's headers had been read: the start of its body timeout.
#[derive(Debug, Clone, Copy)]
pub struct HeadersReceived(pub Instant);

/// Pause after an accept error that is not the client's doing (out of descriptors, say),
/// so that it is not retried in a tight loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `stop` is cancelled and every connection has closed.
/// `limits.max_connections` is the cap as fitted by [`capacity`](super::capacity).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    stop: CancellationToken,
) {
    let cap = limits.max_connections.min(Semaphore::MAX_PERMITS);
    let permits = Arc::new(Semaphore::new(cap));
    let builder = connection_builder(limits.header_timeout);
    while let Some((tcp, permit)) = next_connection(&listener, &permits, &stop).await {
        spawn_connection(tcp, permit, &builder, &app, &stop);
    }
    drop(listener);
    // Each open connection holds a permit: all of them back means all connections closed.
    let all = u32::try_from(cap).unwrap_or(u32::MAX);
    let _ = permits.acquire_many(all).await;
}

/// HTTP/1.1 with keep-alive, a header timeout, and a timer for hyper to run it on.
fn connection_builder(header_timeout: Duration) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    builder
}

/// Waits for a free permit, then for a connection; `None` once `stop` is cancelled.
async fn next_connection(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    stop: &CancellationToken,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    let permit = stop
        .run_until_cancelled(permits.clone().acquire_owned())
        .await?
        .expect("the semaphore is never closed");
    let tcp = stop.run_until_cancelled(accept(listener)).await?;
    Some((tcp, permit))
}

/// The next connection; errors are logged and accepting goes on.
async fn accept(listener: &TcpListener) -> TcpStream {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => return tcp,
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// An error of one connection that went away before it was accepted, not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection in a task of its own, holding `permit` until it closes.
fn spawn_connection(
    tcp: TcpStream,
    permit: OwnedSemaphorePermit,
    builder: &http1::Builder,
    app: &Router,
    stop: &CancellationToken,
) {
    // Responses go out at once: no Nagle delay behind a client's delayed ACK.
    let _ = tcp.set_nodelay(true);
    let service = TowerToHyperService::new(app.clone().map_request(stamp_headers_received));
    let conn = builder.serve_connection(TokioIo::new(tcp), service);
    let stop = stop.clone();
    tokio::spawn(async move {
        let _permit = permit;
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = stop.cancelled() => {
                conn.as_mut().graceful_shutdown();
                conn.as_mut().await
            }
        };
        if let Err(e) = result {
            // Header timeouts, resets, clients that left: theirs, not ours.
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

fn stamp_headers_received(mut req: Request<Incoming>) -> Request<Incoming> {
    req.extensions_mut().insert(HeadersReceived(Instant::now()));
    req
}
