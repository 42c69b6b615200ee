//! What keeps the public shim cheap to abuse: a rate limit per client
//! address on `/oauth/*` (tower_governor, GCRA), a concurrency limit that
//! sheds load at once instead of queueing, and a request timeout. The
//! header-read timeout and the connection cap live with the listener
//! (`http::serve`).
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

use axum::BoxError;
use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_governor::GovernorError;
use tower_governor::governor::{GovernorConfig, GovernorConfigBuilder};
use tower_governor::key_extractor::KeyExtractor;

use crate::error::ApiError;
use crate::http::pages::error_page;
use crate::metrics::{Metrics, WebLoginEvent};

/// The limits of the shim's `/oauth/*` routes.
#[derive(Debug, Clone)]
pub struct OAuthLimits {
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
pub type ClientLimiter = Arc<GovernorConfig<ClientAddress, governor::middleware::NoOpMiddleware>>;

/// Parses `server.trusted_proxies` entries: addresses or CIDR blocks.
///
/// # Errors
/// The entry that is neither.
pub fn parse_trusted_proxy(entry: &str) -> Result<IpNet, String> {
    IpNet::from_str(entry)
        .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
        .map_err(|_| format!("'{entry}' is not an IP address or CIDR block"))
}

/// The rate-limiting key: the client's address, IPv6 cut to its /64.
#[derive(Debug, Clone)]
pub struct ClientAddress {
    trusted: Arc<[IpNet]>,
}

impl ClientAddress {
    /// Keys by client address, believing `X-Forwarded-For` from `trusted` peers.
    pub fn new(trusted: Arc<[IpNet]>) -> Self {
        Self { trusted }
    }

    /// The client behind a request from `peer` with these headers.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
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

impl KeyExtractor for ClientAddress {
    type Key = IpAddr;

    fn extract<T>(&self, request: &Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| peer.ip())
            .ok_or(GovernorError::UnableToExtractKey)?;
        Ok(bucket(self.client(peer, request.headers())))
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

/// The per-client limiter for `limits`.
///
/// # Errors
/// A zero rate or burst (config validation refuses them first).
pub fn client_limiter(limits: &OAuthLimits) -> Result<ClientLimiter, String> {
    let period = Duration::from_nanos(1_000_000_000 / u64::from(limits.per_second.max(1)));
    GovernorConfigBuilder::default()
        .period(period)
        .burst_size(limits.burst)
        .key_extractor(ClientAddress::new(limits.trusted_proxies.clone()))
        .finish()
        .map(Arc::new)
        .ok_or_else(|| "server.oauth_rate_limit: per_second and burst must be above zero".into())
}

/// `routes` behind the shim's limits: per-client rate limit first (the
/// cheapest refusal), then load shedding above `max_in_flight`, then the
/// request timeout. Refusals are the shim's plain pages.
pub fn limit(
    routes: Router,
    limits: &OAuthLimits,
    limiter: ClientLimiter,
    metrics: Arc<Metrics>,
) -> Router {
    let rate_limit = tower_governor::GovernorLayer::new(limiter).error_handler(move |error| {
        if matches!(error, GovernorError::TooManyRequests { .. }) {
            metrics.web_login(WebLoginEvent::RateLimited);
            let mut page = error_page(&ApiError::TooManyRequests);
            page.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
            page
        } else {
            error_page(&ApiError::internal(
                "the shim served a request without its peer address",
            ))
        }
    });
    routes.layer(
        ServiceBuilder::new()
            .layer(rate_limit)
            .layer(HandleErrorLayer::new(refusal))
            .load_shed()
            // Global: one budget for every route (a plain concurrency limit
            // would give each route its own).
            .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
            .timeout(limits.request_timeout),
    )
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
