//! Where requests may come from: the answers to DNS rebinding and to cross-site requests.
//!
//! With auth off, the server listens on loopback only, yet a web page on another site can still
//! reach it through a visitor's browser, under a name of the attacker's that resolves to
//! 127.0.0.1 (DNS rebinding). So with auth off a request naming another host than a loopback one
//! in `Host` is refused with 421. And whether auth is on or off, a state-changing request (any
//! method but `GET`, `HEAD` and `OPTIONS`) that a browser sent from another origin than the
//! server's own (its `Origin` names another scheme, host or port than the request's `Host`, or
//! is `null`) is refused with 403: a page may not submit, cancel, purge or register webhooks in
//! a visitor's name. Requests without these headers (curl, the `omni` client, other services)
//! are not affected: browsers always send `Host`, and `Origin` on every state-changing request.
//!
//! Behind a reverse proxy, the proxy must pass the client's `Host` on (nginx:
//! `proxy_set_header Host $host`), or browsers' requests are taken for cross-site ones.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::uri::Authority;
use axum::http::{Method, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::problem::Problem;

/// Middleware: refuses requests from where they may not come (see the module's docs).
pub(crate) async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // `Host`, or else the request target's authority (HTTP/2's `:authority`).
    let host = request
        .headers()
        .get(header::HOST)
        .map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<Authority>().ok())
        })
        .or_else(|| request.uri().authority().map(|a| Some(a.clone())));
    if !state.auth.is_enabled()
        && let Some(host) = &host
        && !host.as_ref().is_some_and(|h| is_loopback(h.host()))
    {
        return Problem::new(
            StatusCode::MISDIRECTED_REQUEST,
            "misdirected request",
            "with auth off this server answers only requests to a loopback name \
             (localhost, 127.0.0.1, [::1]) in Host",
        )
        .into_response();
    }
    let safe = [Method::GET, Method::HEAD, Method::OPTIONS].contains(request.method());
    if !safe
        && let Some(origin) = request.headers().get(header::ORIGIN)
        && !origin
            .to_str()
            .ok()
            .zip(host.flatten())
            .is_some_and(|(origin, host)| same_origin(origin, &host))
    {
        return Problem::new(
            StatusCode::FORBIDDEN,
            "cross-origin request",
            format!(
                "a {} from another origin ({}) is refused: pages of other sites may not change \
                 anything here",
                request.method(),
                String::from_utf8_lossy(origin.as_bytes())
            ),
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether `host` (a `Host` header's host part) names this machine's loopback: `localhost` and
/// names under `.localhost` (which resolve to loopback by RFC 6761, never through DNS), and
/// loopback addresses (`127.0.0.0/8`, `[::1]`).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let address = host.strip_prefix('[').and_then(|h| h.strip_suffix(']'));
    address
        .unwrap_or(&host)
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether an `Origin` header names the same origin as the request's `Host`: the same host and
/// port (the scheme's default port when none is written). The scheme the request came in with
/// is not known here (TLS may end at a proxy), so either of `http` and `https` passes.
fn same_origin(origin: &str, host: &Authority) -> bool {
    let Ok(origin) = origin.parse::<Uri>() else {
        return false; // `null`, or not a URL at all
    };
    let (Some(scheme), Some(authority)) = (origin.scheme_str(), origin.authority()) else {
        return false;
    };
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    // A port left out is the scheme's default, in `Host` as in `Origin`.
    authority.host().eq_ignore_ascii_case(host.host())
        && authority.port_u16().unwrap_or(default) == host.port_u16().unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for host in [
            "localhost",
            "LOCALHOST.",
            "ui.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "attacker.example",
            "localhost.attacker.example",
            "10.0.0.1",
            "0.0.0.0",
            "[::ffff:127.0.0.1]",
            "[::]",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn origins() {
        let host = |h: &str| h.parse::<Authority>().unwrap();
        assert!(same_origin(
            "http://127.0.0.1:8080",
            &host("127.0.0.1:8080")
        ));
        assert!(same_origin(
            "https://omni.example.com",
            &host("omni.example.com")
        ));
        assert!(same_origin(
            "https://omni.example.com",
            &host("omni.example.com:443")
        ));
        assert!(same_origin(
            "http://LOCALHOST:8080",
            &host("localhost:8080")
        ));
        assert!(!same_origin(
            "http://127.0.0.1:9999",
            &host("127.0.0.1:8080")
        ));
        assert!(!same_origin(
            "http://attacker.example",
            &host("127.0.0.1:8080")
        ));
        assert!(!same_origin(
            "http://localhost:8080",
            &host("127.0.0.1:8080")
        ));
        assert!(!same_origin(
            "https://omni.example.com:8443",
            &host("omni.example.com")
        ));
        assert!(!same_origin("null", &host("127.0.0.1:8080")));
        assert!(!same_origin("file://", &host("127.0.0.1:8080")));
        assert!(!same_origin("not a url", &host("127.0.0.1:8080")));
    }
}
