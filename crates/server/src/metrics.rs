//! Prometheus metrics, served at `GET /metrics` on the admin listener
//! (`server.admin_listen`, loopback by default; never on the public shim):
//! RPCs by method and code with latency, WeChat calls by endpoint and errcode
//! with latency, app-token fetches, refreshes and cache hits, sessions issued,
//! refreshed, reused, refreshed within the reuse grace and expired, VerifyToken
//! and GetProfile answers by source, and the database pools. Labels are names and codes, never ids or secrets.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::exemplar::HistogramWithExemplars;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::exponential_buckets;
use prometheus_client::registry::Registry;
use wechat_client::{AppTokenManager, CallObserver, CallOutcome, TokenStats};

/// The labels of an RPC count.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabels {
    method: &'static str,
    code: &'static str,
}

/// A label set of one name.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    method: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WeChatLabels {
    endpoint: &'static str,
    errcode: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: &'static str,
    state: &'static str,
}

/// An exemplar's labels: the trace of one call a latency bucket saw last.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TraceLabels {
    trace_id: String,
}

type LatencyHistogram = HistogramWithExemplars<TraceLabels>;
type Latency = Family<MethodLabels, LatencyHistogram, fn() -> LatencyHistogram>;
type WeChatLatency = Family<EndpointLabels, LatencyHistogram, fn() -> LatencyHistogram>;

fn latency_buckets() -> LatencyHistogram {
    // 0.25 ms to ~8 s.
    HistogramWithExemplars::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The exemplar of an observation made now: the current trace, when traces
/// are exported and it is sampled (a backend then jumps from a slow bucket to
/// a trace that fell in it).
fn exemplar() -> Option<TraceLabels> {
    crate::telemetry::current_trace_id().map(|trace_id| TraceLabels { trace_id })
}

/// What a session did, for `wechat_identity_sessions_total`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SessionEvent {
    /// A login opened one.
    Issued,
    /// RefreshToken rotated one.
    Refreshed,
    /// A retired refresh token was presented: the session was revoked.
    Reused,
    /// The previous refresh token came back within the reuse grace (a lost
    /// answer): the session got a new pair instead of being revoked.
    Grace,
    /// RefreshToken found the session past its maximum lifetime.
    Expired,
}

/// What a browser login did, for `wechat_identity_web_login_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WebLoginEvent {
    /// `/authorize` sent a browser to WeChat (nothing written).
    Started,
    /// A callback's state was forged, tampered with, foreign, expired or used.
    RefusedState,
    /// A callback came from a browser without the login's cookie.
    RefusedBinding,
    /// The shim's rate limit refused a request from one client address.
    RateLimited,
    /// A callback claimed its state (its first database write).
    Claimed,
    /// A claimed login completed with a ticket.
    LoggedIn,
    /// A claimed login failed after consent.
    Failed,
    /// The user declined.
    Declined,
    /// WeChat's repeat of a callback was answered from the first.
    Repeated,
}

impl WebLoginEvent {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            WebLoginEvent::Started => "started",
            WebLoginEvent::RefusedState => "refused_state",
            WebLoginEvent::RefusedBinding => "refused_binding",
            WebLoginEvent::RateLimited => "rate_limited",
            WebLoginEvent::Claimed => "claimed",
            WebLoginEvent::LoggedIn => "logged_in",
            WebLoginEvent::Failed => "failed",
            WebLoginEvent::Declined => "declined",
            WebLoginEvent::Repeated => "repeated",
        }
    }
}

/// Every metric of one service instance.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    rpcs: Family<RpcLabels, Counter>,
    rpc_latency: Latency,
    wechat_calls: Family<WeChatLabels, Counter>,
    wechat_latency: WeChatLatency,
    sessions: Family<EventLabels, Counter>,
    verify_lookups: Family<EventLabels, Counter>,
    profile_lookups: Family<EventLabels, Counter>,
    tokens: Family<EventLabels, Counter>,
    pools: Family<PoolLabels, Gauge>,
    group_commit: Family<EventLabels, Counter>,
    web_logins: Family<EventLabels, Counter>,
    tokens_seen: Mutex<TokenStats>,
    group_commit_seen: Mutex<storage::GroupCommitStats>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, registered under `wechat_identity_`.
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("wechat_identity");
        let rpcs = Family::<RpcLabels, Counter>::default();
        let rpc_latency: Latency = Family::new_with_constructor(latency_buckets);
        let wechat_calls = Family::<WeChatLabels, Counter>::default();
        let wechat_latency: WeChatLatency = Family::new_with_constructor(latency_buckets);
        let sessions = Family::<EventLabels, Counter>::default();
        let verify_lookups = Family::<EventLabels, Counter>::default();
        let profile_lookups = Family::<EventLabels, Counter>::default();
        let tokens = Family::<EventLabels, Counter>::default();
        let pools = Family::<PoolLabels, Gauge>::default();
        let group_commit = Family::<EventLabels, Counter>::default();
        let web_logins = Family::<EventLabels, Counter>::default();
        registry.register(
            "rpc_requests",
            "gRPC calls by method and status code",
            rpcs.clone(),
        );
        registry.register(
            "rpc_duration_seconds",
            "gRPC call latency by method",
            rpc_latency.clone(),
        );
        registry.register(
            "wechat_calls",
            "WeChat API calls by endpoint and errcode (none: no answer)",
            wechat_calls.clone(),
        );
        registry.register(
            "wechat_call_duration_seconds",
            "WeChat API call latency, retries included, by endpoint",
            wechat_latency.clone(),
        );
        registry.register(
            "sessions",
            "sessions issued, refreshed, revoked for refresh-token reuse (reused), refreshed within the reuse grace (grace), and refused past their max lifetime (expired)",
            sessions.clone(),
        );
        registry.register(
            "verify_token_lookups",
            "VerifyToken answers by how they were reached: memory, session_read, verified (signature checked), rejected",
            verify_lookups.clone(),
        );
        registry.register(
            "profile_lookups",
            "GetProfile reads by where they were answered from: memory (the profile cache) or database",
            profile_lookups.clone(),
        );
        registry.register(
            "app_token_events",
            "app access tokens: fetched, forced refreshes, rejected by WeChat, local and shared cache hits",
            tokens.clone(),
        );
        registry.register(
            "database_connections",
            "database pool connections by pool and state",
            pools.clone(),
        );
        registry.register(
            "storage_group_commit_events",
            "SQLite group commit: commits, writes committed (writes/commits is the mean batch), rollbacks of batches replayed one by one, writes refused because the queue was full, WAL checkpoints off the commit path",
            group_commit.clone(),
        );
        registry.register(
            "web_login_events",
            "browser logins on the HTTP shim: started, refused_state, refused_binding, rate_limited (nothing written for any of these), claimed, logged_in, failed, declined, repeated",
            web_logins.clone(),
        );
        Self {
            registry,
            rpcs,
            rpc_latency,
            wechat_calls,
            wechat_latency,
            sessions,
            verify_lookups,
            profile_lookups,
            tokens,
            pools,
            group_commit,
            web_logins,
            tokens_seen: Mutex::new(TokenStats::default()),
            group_commit_seen: Mutex::new(storage::GroupCommitStats::default()),
        }
    }

    /// One finished RPC. On every call's path: the labels borrow static
    /// names, nothing is allocated.
    pub(crate) fn rpc(&self, method: &'static str, code: tonic::Code, elapsed: Duration) {
        self.rpcs
            .get_or_create(&RpcLabels {
                method,
                code: code_name(code),
            })
            .inc();
        self.rpc_latency
            .get_or_create(&MethodLabels { method })
            .observe(elapsed.as_secs_f64(), exemplar(), None);
    }

    /// How one VerifyToken answer was reached.
    pub(crate) fn verify_lookup(&self, lookup: crate::sessions::verify_cache::Lookup) {
        self.verify_lookups
            .get_or_create(&EventLabels {
                event: lookup.as_str(),
            })
            .inc();
    }

    /// Where one GetProfile read was answered from.
    pub(crate) fn profile_lookup(&self, source: crate::profile_cache::Source) {
        self.profile_lookups
            .get_or_create(&EventLabels {
                event: source.as_str(),
            })
            .inc();
    }

    /// One session event.
    pub(crate) fn session(&self, event: SessionEvent) {
        let event = match event {
            SessionEvent::Issued => "issued",
            SessionEvent::Refreshed => "refreshed",
            SessionEvent::Reused => "reused",
            SessionEvent::Grace => "grace",
            SessionEvent::Expired => "expired",
        };
        self.sessions.get_or_create(&EventLabels { event }).inc();
    }

    /// One browser-login event.
    pub(crate) fn web_login(&self, event: WebLoginEvent) {
        self.web_logins
            .get_or_create(&EventLabels {
                event: event.as_str(),
            })
            .inc();
    }

    /// The text exposition, after bringing the sampled values up to date.
    fn render(&self, tokens: &AppTokenManager, storage: &storage::Storage) -> String {
        self.sample_tokens(tokens.stats());
        if let Some(stats) = storage.group_commit_stats() {
            self.sample_group_commit(stats);
        }
        for (pool, size, idle) in storage.pool_stats() {
            let set = |state: &'static str, value: usize| {
                self.pools
                    .get_or_create(&PoolLabels { pool, state })
                    .set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            set("idle", idle);
            set("in_use", size.saturating_sub(idle));
        }
        let mut text = String::new();
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::warn!("metrics could not be encoded");
        }
        text
    }

    /// The storage counts its group commits on its own, like the token manager.
    fn sample_group_commit(&self, now: storage::GroupCommitStats) {
        let Ok(mut seen) = self.group_commit_seen.lock() else {
            return;
        };
        advance(
            &self.group_commit,
            [
                ("commit", now.commits, seen.commits),
                ("write", now.writes, seen.writes),
                ("rollback", now.rollbacks, seen.rollbacks),
                ("refused", now.refused, seen.refused),
                ("checkpoint", now.checkpoints, seen.checkpoints),
            ],
        );
        *seen = now;
    }

    /// The token manager counts on its own; its counters grow by what it
    /// counted since the last scrape.
    fn sample_tokens(&self, now: TokenStats) {
        let Ok(mut seen) = self.tokens_seen.lock() else {
            return;
        };
        advance(
            &self.tokens,
            [
                ("fetched", now.fetches, seen.fetches),
                (
                    "forced_refresh",
                    now.forced_refreshes,
                    seen.forced_refreshes,
                ),
                ("rejected", now.rejections, seen.rejections),
                ("local_hit", now.local_hits, seen.local_hits),
                ("shared_hit", now.shared_hits, seen.shared_hits),
            ],
        );
        *seen = now;
    }
}

impl CallObserver for Metrics {
    fn observe(&self, outcome: CallOutcome) {
        self.wechat_calls
            .get_or_create(&WeChatLabels {
                endpoint: outcome.endpoint,
                errcode: outcome
                    .errcode
                    .map_or_else(|| "none".to_owned(), |code| code.to_string()),
            })
            .inc();
        self.wechat_latency
            .get_or_create(&EndpointLabels {
                endpoint: outcome.endpoint,
            })
            .observe(outcome.elapsed.as_secs_f64(), exemplar(), None);
    }
}

/// Moves each `(event, now, before)` counter of `family` on by what its
/// source counted since the last scrape.
fn advance<const N: usize>(
    family: &Family<EventLabels, Counter>,
    moves: [(&'static str, u64, u64); N],
) {
    for (event, now, before) in moves {
        family
            .get_or_create(&EventLabels { event })
            .inc_by(now.saturating_sub(before));
    }
}

/// The code's name as tonic spells it in `Debug` (`Ok`, `InvalidArgument`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "Ok",
        Code::Cancelled => "Cancelled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// What `/metrics` reads.
#[derive(Debug, Clone)]
pub(crate) struct MetricsState {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The token manager, whose counters are sampled.
    pub tokens: Arc<AppTokenManager>,
    /// The database, whose pools are sampled.
    pub storage: storage::Storage,
}

/// `GET /metrics`, in Prometheus' text format.
pub(crate) fn routes(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(state)
}

async fn scrape(State(state): State<MetricsState>) -> Response {
    let text = state.metrics.render(&state.tokens, &state.storage);
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_are_tonics_own() {
        for number in 0..=16 {
            let code = tonic::Code::from_i32(number);
            assert_eq!(code_name(code), format!("{code:?}"));
        }
    }
}
