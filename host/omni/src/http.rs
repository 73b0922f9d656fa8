//! Serving HTTP on the listener: accepting connections within their caps, reading requests
//! within their timeouts, and stopping cleanly (`[http]` in the configuration).
//!
//! hyper's server with a timer, rather than `axum::serve`, which sets no header-read timeout and
//! accepts without bound: a client that sends half a request holds its connection only for
//! `header_read_timeout` (the same timeout closes an idle keep-alive connection, as hyper starts
//! it whenever the connection waits for a request head), at most `max_connections` are open at
//! once (more wait in the listen backlog), and one client address holds at most
//! `max_connections_per_address` (more are answered 429 and closed).
//!
//! A stop ([`serve`]'s `shutdown` completes): no connection is accepted any more, every event
//! and log stream ends with a last event (`omni_api::Streams::stop`), idle connections close,
//! and requests in flight are answered; whatever is still open after `shutdown_timeout` is cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// `[http]`: connections, timeouts and the stop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request's head must arrive within this; an idle keep-alive connection closes after it.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A request that does not stream must be answered within this (503 after it).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// Connections open at once from one client address; more are answered 429 and closed.
    pub max_connections_per_address: usize,
    /// Event and log streams open at once per caller (the user or token; with auth off, the
    /// client's address); more are answered 429.
    pub max_streams_per_caller: usize,
    /// The largest answer of a job listing or a page of log lines, in KiB: a page is cut short
    /// before it, with a cursor to read on.
    pub max_answer_kib: usize,
    /// How long a stop waits for requests in flight before it cuts them.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            request_timeout: omni_api::DEFAULT_REQUEST_TIMEOUT,
            max_connections: 4096,
            max_connections_per_address: 512,
            max_streams_per_caller: omni_api::streams::DEFAULT_MAX_PER_CALLER,
            max_answer_kib: omni_api::DEFAULT_ANSWER_LIMIT >> 10,
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

/// How many connections each client address holds, and the cap.
struct Addresses {
    open: HashMap<IpAddr, usize>,
    cap: usize,
}

impl Addresses {
    /// Counts a connection from `address`; `false` (not counted) when it holds the most.
    fn admit(&mut self, address: IpAddr) -> bool {
        let count = self.open.entry(address).or_insert(0);
        if *count >= self.cap {
            return false;
        }
        *count += 1;
        true
    }

    fn release(&mut self, address: IpAddr) {
        if let Some(count) = self.open.get_mut(&address) {
            *count -= 1;
            if *count == 0 {
                self.open.remove(&address);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then stops as the module says:
/// `on_stop` runs first (it ends the event streams), then connections are asked to close and
/// waited for up to `shutdown_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: &HttpConfig,
    shutdown: impl Future<Output = ()> + Send,
    on_stop: impl FnOnce(),
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.header_read_timeout)
        .max_concurrent_streams(256);
    let (stopping, stop) = watch::channel(false);
    let mut connections: JoinSet<IpAddr> = JoinSet::new();
    let mut addresses = Addresses {
        open: HashMap::new(),
        cap: config.max_connections_per_address,
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let full = connections.len() >= config.max_connections;
        tokio::select! {
            () = &mut shutdown => break,
            Some(ended) = connections.join_next() => {
                if let Ok(address) = ended {
                    addresses.release(address);
                }
            }
            accepted = listener.accept(), if !full => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors or a connection reset before it was taken:
                        // the listener goes on after a breath.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let address = peer.ip();
                if addresses.admit(address) {
                    let connection = connection(&builder, stream, peer, app.clone(), stop.clone());
                    connections.spawn(async move {
                        connection.await;
                        address
                    });
                } else {
                    tracing::warn!(%address, cap = addresses.cap, "too many connections from one address");
                    let refused = refuse(&builder, stream);
                    connections.spawn(async move {
                        refused.await;
                        address
                    });
                    // Counted so that its release balances.
                    *addresses.open.entry(address).or_insert(0) += 1;
                }
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "stopping: no new connections; streams end, requests in flight are answered"
    );
    on_stop();
    let _ = stopping.send(true);
    let drained = tokio::time::timeout(config.shutdown_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            timeout = ?config.shutdown_timeout,
            "connections still open after the shutdown timeout are cut"
        );
        connections.shutdown().await;
    }
}

/// One connection served with `app` until it closes, asked to close gracefully when `stop`
/// turns true (idle ones close at once, a request in flight is answered first).
fn connection(
    builder: &auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        app.clone().oneshot(request.map(axum::body::Body::new))
    });
    let builder = builder.clone();
    async move {
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let mut connection = std::pin::pin!(connection);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = stop.wait_for(|stopping| *stopping) => {}
        }
        connection.as_mut().graceful_shutdown();
        let _ = connection.await;
    }
}

/// A connection beyond its address's cap: every request on it is answered 429, and it closes.
fn refuse(
    builder: &auto::Builder<TokioExecutor>,
    stream: tokio::net::TcpStream,
) -> impl Future<Output = ()> + Send + 'static {
    let service = hyper::service::service_fn(|_: hyper::Request<hyper::body::Incoming>| async {
        let mut problem = omni_api::Problem::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too many connections",
            "this client address has the most connections open that one may ([http] max_connections_per_address)",
        );
        problem.retry_after = Some(1);
        let mut response = axum::response::IntoResponse::into_response(problem);
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
        Ok::<_, Infallible>(response)
    });
    let builder = builder.clone();
    async move {
        let _ = builder
            .serve_connection(TokioIo::new(stream), service)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_gets_its_cap_and_its_places_back() {
        let mut addresses = Addresses {
            open: HashMap::new(),
            cap: 2,
        };
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "::1".parse().unwrap());
        assert!(addresses.admit(a) && addresses.admit(a));
        assert!(!addresses.admit(a));
        assert!(addresses.admit(b));
        addresses.release(a);
        assert!(addresses.admit(a));
        addresses.release(a);
        addresses.release(a);
        addresses.release(b);
        assert!(addresses.open.is_empty());
    }
}
