//! What keeps the public shim cheap to abuse: a rate limit per client
//! address on `/oauth/*` (governor's GCRA, keyed by address), a concurrency
//! limit that sheds load at once instead of queueing, and a request timeout.
//! The header-read timeout and the connection cap live with the listener
//! (`http::serve`).
//!
//! The rate limit is governor itself behind a few lines of middleware, not
//! tower_governor: that crate needs governor's default features (a
//! concurrent map, a CPU-clock crate, jitter) and a header parser of its own,
//! six crates and two duplicate versions for what `check_key` does here.
//!
//! The client's address is the socket's peer, or, when that peer is one of
//! `server.trusted_proxies`, the right-most address of `X-Forwarded-For` that
//! is not itself a trusted proxy: the left part of that header is whatever
//! the client wrote, so only what the proxies appended is believed. IPv6
//! clients are keyed by their /64, the smallest block a subscriber gets.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use std::num::NonZeroU32;

use axum::BoxError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

use crate::error::ApiError;
use crate::http::pages::error_page;
use crate::metrics::{Metrics, WebLoginEvent};

/// The limits of the shim's `/oauth/*` routes.
#[derive(Debug, Clone)]
pub(crate) struct OAuthLimits {
    /// Requests a second per client address, sustained.
    pub per_second: u32,
    /// Requests a client address may send at once above the sustained rate.
    pub burst: u32,
    /// Requests handled at once; more are answered 503 at once.
    pub max_in_flight: usize,
    /// The longest a request may take.
    pub request_timeout: Duration,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Arc<[IpNet]>,
}

/// The shim's per-client limiter, kept so that a task can forget idle
/// clients (`retain_recent`) and its memory stays bounded.
pub(crate) type ClientLimiter = Arc<DefaultKeyedRateLimiter<IpAddr>>;

/// Parses `server.trusted_proxies` entries: addresses or CIDR blocks.
///
/// # Errors
/// The entry that is neither.
pub(crate) fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    IpNet::from_str(entry)
        .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
        .map_err(|_| format!("'{entry}' is not an IP address or CIDR block"))
}

/// The rate-limiting key: the client's address, IPv6 cut to its /64.
#[derive(Debug, Clone)]
pub(crate) struct ClientAddress {
    trusted: Arc<[IpNet]>,
}

impl ClientAddress {
    /// Keys by client address, believing `X-Forwarded-For` from `trusted` peers.
    pub(crate) fn new(trusted: Arc<[IpNet]>) -> Self {
        Self { trusted }
    }

    /// The client behind a request from `peer` with these headers.
    pub(crate) fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = canonical(peer);
        if !self.is_trusted(client) {
            return client;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .collect();
        for hop in forwarded.iter().rev() {
            let Some(address) = parse_hop(hop.trim()) else {
                // Unreadable: whatever lies left of it is the client's own
                // writing; the last proxy's view stands.
                break;
            };
            client = canonical(address);
            if !self.is_trusted(client) {
                break;
            }
        }
        client
    }

    fn is_trusted(&self, address: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&address))
    }
}

/// An IPv4 address as itself (also when it arrives IPv4-mapped in IPv6).
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The rate-limit bucket of a client: its IPv4 address, or its IPv6 /64.
fn bucket(client: IpAddr) -> IpAddr {
    match client {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(Ipv6Addr::from(segments))
        }
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: an address, possibly with a port
/// (`1.2.3.4:5678`, `[2001:db8::1]:443`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    IpAddr::from_str(hop)
        .ok()
        .or_else(|| SocketAddr::from_str(hop).ok().map(|socket| socket.ip()))
}

/// The per-client limiter for `limits`: `per_second` sustained, `burst` at once.
///
/// # Errors
/// A zero rate or burst (config validation refuses them first).
pub(crate) fn client_limiter(limits: &OAuthLimits) -> Result<ClientLimiter, String> {
    let zero = || "server.oauth_rate_limit: per_second and burst must be above zero".to_owned();
    let per_second = NonZeroU32::new(limits.per_second).ok_or_else(zero)?;
    let burst = NonZeroU32::new(limits.burst).ok_or_else(zero)?;
    Ok(Arc::new(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(per_second).allow_burst(burst),
    )))
}

/// What the rate-limiting middleware needs.
#[derive(Debug, Clone)]
struct RateLimit {
    limiter: ClientLimiter,
    addresses: ClientAddress,
    metrics: Arc<Metrics>,
}

/// `routes` behind the shim's limits: per-client rate limit first (the
/// cheapest refusal), then load shedding above `max_in_flight`, then the
/// request timeout. Refusals are the shim's plain pages.
pub(crate) fn limit(
    routes: Router,
    limits: &OAuthLimits,
    limiter: ClientLimiter,
    metrics: Arc<Metrics>,
) -> Router {
    let rate_limit = RateLimit {
        limiter,
        addresses: ClientAddress::new(limits.trusted_proxies.clone()),
        metrics,
    };
    routes
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(refusal))
                .load_shed()
                // Global: one budget for every route (a plain concurrency
                // limit would give each route its own).
                .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
                .timeout(limits.request_timeout),
        )
        .layer(axum::middleware::from_fn_with_state(
            rate_limit,
            rate_limited,
        ))
}

/// Refuses a request whose client is over its rate (a 429 page saying when
/// to come back), before anything else looks at it.
async fn rate_limited(State(limit): State<RateLimit>, request: Request, next: Next) -> Response {
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return error_page(&ApiError::internal(
            "the shim served a request without its peer address",
        ));
    };
    let client = bucket(limit.addresses.client(peer.ip(), request.headers()));
    if let Err(not_until) = limit.limiter.check_key(&client) {
        limit.metrics.web_login(WebLoginEvent::RateLimited);
        let wait = not_until
            .wait_time_from(limit.limiter.clock().now())
            .as_secs()
            .max(1);
        let mut page = error_page(&ApiError::TooManyRequests);
        page.headers_mut()
            .insert(axum::http::header::RETRY_AFTER, wait.into());
        return page;
    }
    next.run(request).await
}

/// The page for a request the limits refused.
async fn refusal(error: BoxError) -> Response {
    if error.is::<tower::timeout::error::Elapsed>() {
        return error_page(&ApiError::DeadlineExceeded);
    }
    if error.is::<tower::load_shed::error::Overloaded>() {
        return error_page(&ApiError::Unavailable);
    }
    error_page(&ApiError::internal(error)).into_response()
}

#[cfg(test)]
mod tests;
