//! One request to WeChat, with retries, failover, the caller's deadline, and
//! WeChat's response quirks (WECHAT_API.md §0).

use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::config::ClientConfig;
use crate::deadline::Deadline;
use crate::endpoint::Endpoint;
use crate::error::{Error, TransportFailure, WeChatError};
use crate::retry::RetryPolicy;

/// A request about to be sent: the endpoint, its query and its JSON body.
pub(crate) struct Request<'a> {
    pub(crate) endpoint: Endpoint,
    pub(crate) query: Vec<(&'static str, &'a str)>,
    pub(crate) json: Option<serde_json::Value>,
    /// Whether a retry after an ambiguous failure is allowed at all (a forced
    /// token refresh is not: a second one would spend WeChat's daily budget).
    pub(crate) retry_ambiguous: bool,
}

impl<'a> Request<'a> {
    pub(crate) fn get(endpoint: Endpoint, query: Vec<(&'static str, &'a str)>) -> Self {
        Self {
            endpoint,
            query,
            json: None,
            retry_ambiguous: true,
        }
    }

    pub(crate) fn post_json(
        endpoint: Endpoint,
        query: Vec<(&'static str, &'a str)>,
        body: serde_json::Value,
    ) -> Self {
        Self {
            endpoint,
            query,
            json: Some(body),
            retry_ambiguous: true,
        }
    }
}

/// The API host and its fallback, with the memory of which one is down.
#[derive(Debug)]
struct Hosts {
    primary: String,
    fallback: Option<String>,
    primary_down_until: Mutex<Option<Instant>>,
    failback_after: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host {
    Primary,
    Fallback,
}

impl Hosts {
    fn pick(&self) -> (Host, &str) {
        let mut down = self
            .primary_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match (&self.fallback, *down) {
            (Some(fallback), Some(until)) if Instant::now() < until => (Host::Fallback, fallback),
            _ => {
                *down = None;
                (Host::Primary, &self.primary)
            }
        }
    }

    /// Notes that `host` refused a connection. Returns whether the next attempt
    /// goes elsewhere (so it need not wait).
    fn report_unreachable(&self, host: Host) -> bool {
        let Some(fallback) = &self.fallback else {
            return false;
        };
        let mut down = self
            .primary_down_until
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match host {
            Host::Primary => {
                *down = Some(Instant::now() + self.failback_after);
                tracing::warn!(fallback = %fallback, "wechat primary api host unreachable, failing over");
                true
            }
            // Both are down: go back to the primary, which may have recovered first.
            Host::Fallback => {
                *down = None;
                true
            }
        }
    }

    fn report_reachable(&self, host: Host) {
        if host == Host::Primary {
            *self
                .primary_down_until
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = None;
        }
    }
}

/// Sends requests to WeChat.
#[derive(Debug)]
pub(crate) struct Transport {
    http: reqwest::Client,
    hosts: Hosts,
    policy: RetryPolicy,
    request_timeout: Duration,
    observer: Option<std::sync::Arc<dyn crate::config::CallObserver>>,
}

/// What one attempt came to.
enum Attempt<T> {
    Done(Result<T, Error>),
    /// A failure worth another attempt. `ambiguous` when WeChat may have acted on
    /// the request; `rerouted` when the next attempt goes to another host.
    Retry {
        error: Error,
        ambiguous: bool,
        rerouted: bool,
    },
}

impl Transport {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("wechat-identity/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            hosts: Hosts {
                primary: config.api_base.trim_end_matches('/').to_owned(),
                fallback: config
                    .api_fallback
                    .as_ref()
                    .map(|f| f.trim_end_matches('/').to_owned()),
                primary_down_until: Mutex::new(None),
                failback_after: config.failback_after,
            },
            policy: config.retry,
            request_timeout: config.request_timeout,
            observer: config.observer.clone(),
        })
    }

    /// Sends `request`, retrying transient failures within `deadline`, in a
    /// `wechat` span (endpoint, attempts, errcode; never a query parameter,
    /// which may hold a secret or a code) and told to the observer.
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        deadline: Deadline,
    ) -> Result<T, Error> {
        use tracing::Instrument;
        let endpoint = request.endpoint;
        // The logical call, named by its endpoint; each attempt is a CLIENT
        // span under it (`attempt`), so retries show.
        let span = tracing::info_span!(
            "wechat",
            endpoint = endpoint.name(),
            attempts = tracing::field::Empty,
            errcode = tracing::field::Empty,
            otel.name = endpoint.name(),
            otel.status_code = tracing::field::Empty,
        );
        let started = Instant::now();
        let mut attempts = 0;
        let result = self
            .call_with_retries(request, deadline, &mut attempts)
            .instrument(span.clone())
            .await;
        let errcode = match &result {
            Ok(_) => Some(0),
            Err(Error::WeChat(error)) => Some(error.errcode),
            Err(_) => None,
        };
        span.record("attempts", attempts);
        if let Some(errcode) = errcode {
            span.record("errcode", errcode);
        }
        if result.is_err() {
            span.record("otel.status_code", "error");
        }
        if let Some(observer) = &self.observer {
            observer.observe(crate::config::CallOutcome {
                endpoint: endpoint.name(),
                errcode,
                attempts,
                elapsed: started.elapsed(),
            });
        }
        result
    }

    async fn call_with_retries<T: DeserializeOwned>(
        &self,
        request: Request<'_>,
        deadline: Deadline,
        attempts: &mut u32,
    ) -> Result<T, Error> {
        let endpoint = request.endpoint;
        let mut ambiguous_so_far = false;
        loop {
            if deadline.expired() {
                return Err(Error::DeadlineExceeded { endpoint });
            }
            *attempts += 1;
            let (error, ambiguous, rerouted) = match self
                .attempt(&request, deadline, *attempts, ambiguous_so_far)
                .await
            {
                Attempt::Done(result) => return result,
                Attempt::Retry {
                    error,
                    ambiguous,
                    rerouted,
                } => (error, ambiguous, rerouted),
            };
            ambiguous_so_far |= ambiguous;
            let out_of_attempts = *attempts >= self.policy.max_attempts.max(1);
            let forbidden = ambiguous && !request.retry_ambiguous;
            let wait = if rerouted {
                Duration::ZERO
            } else {
                self.policy.backoff(*attempts)
            };
            if out_of_attempts || forbidden || !deadline.allows(wait) {
                // Cut by the caller's deadline, not by WeChat; but a request
                // that never reached WeChat stays what it was (never sent).
                if deadline.expired() && (ambiguous_so_far || !error.never_sent()) {
                    tracing::warn!(endpoint = endpoint.name(), attempts, error = %error, "wechat call stopped at the caller's deadline");
                    return Err(Error::DeadlineExceeded { endpoint });
                }
                tracing::warn!(endpoint = endpoint.name(), attempts, error = %error, "wechat call failed, giving up");
                return Err(error);
            }
            tracing::debug!(endpoint = endpoint.name(), attempts, error = %error, wait_ms = wait.as_millis() as u64, "wechat call failed, retrying");
            tokio::time::sleep(wait).await;
        }
    }

    /// One attempt, in a CLIENT span of its own as OpenTelemetry's HTTP
    /// conventions have it (`<METHOD> <endpoint>`, `server.address`,
    /// `http.request.method`, `http.response.status_code`, WeChat's errcode;
    /// never the URL's query, which may hold a secret or a code), marked as
    /// an error when the attempt failed.
    async fn attempt<T: DeserializeOwned>(
        &self,
        request: &Request<'_>,
        deadline: Deadline,
        attempts: u32,
        after_ambiguous: bool,
    ) -> Attempt<T> {
        use tracing::Instrument;
        let endpoint = request.endpoint;
        let (host, base) = self.hosts.pick();
        let method = if request.json.is_some() {
            "POST"
        } else {
            "GET"
        };
        let span = tracing::info_span!(
            "wechat_attempt",
            otel.name = format!("{method} {}", endpoint.name()).as_str(),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            server.address = server_address(base),
            http.request.method = method,
            http.response.status_code = tracing::field::Empty,
            errcode = tracing::field::Empty,
            attempt = attempts,
        );
        let outcome = self
            .attempt_on(request, deadline, attempts, after_ambiguous, (host, base))
            .instrument(span.clone())
            .await;
        if !matches!(outcome, Attempt::Done(Ok(_))) {
            span.record("otel.status_code", "error");
        }
        outcome
    }

    async fn attempt_on<T: DeserializeOwned>(
        &self,
        request: &Request<'_>,
        deadline: Deadline,
        attempts: u32,
        after_ambiguous: bool,
        (host, base): (Host, &str),
    ) -> Attempt<T> {
        let endpoint = request.endpoint;
        let timeout = deadline.cap(self.request_timeout);
        if timeout.is_zero() {
            return Attempt::Done(Err(Error::DeadlineExceeded { endpoint }));
        }
        let url = format!("{base}{}", endpoint.path());
        let mut builder = match request.json {
            Some(ref body) => self.http.post(url).json(body),
            None => self.http.get(url),
        };
        builder = builder.query(&request.query).timeout(timeout);

        // A request that may have reached WeChat before failing: retried, but ambiguous.
        let lost = |error: reqwest::Error| {
            let failure = if error.is_timeout() {
                TransportFailure::Timeout
            } else {
                TransportFailure::ConnectionLost
            };
            Attempt::Retry {
                error: transport_error(endpoint, attempts, failure, error),
                ambiguous: true,
                rerouted: false,
            }
        };
        let response = match builder.send().await {
            Ok(response) => response,
            // No connection: the request never reached WeChat, so even a code may be re-sent.
            Err(error) if error.is_connect() => {
                let rerouted = self.hosts.report_unreachable(host);
                return Attempt::Retry {
                    error: transport_error(endpoint, attempts, TransportFailure::Connect, error),
                    ambiguous: false,
                    rerouted,
                };
            }
            Err(error) => return lost(error),
        };
        self.hosts.report_reachable(host);

        let status = response.status();
        tracing::Span::current().record("http.response.status_code", status.as_u16());
        if status.is_server_error() || status.as_u16() == 429 {
            let error = Error::HttpStatus {
                endpoint,
                status: status.as_u16(),
                attempts,
            };
            return Attempt::Retry {
                error,
                ambiguous: true,
                rerouted: false,
            };
        }
        if !status.is_success() {
            return Attempt::Done(Err(Error::HttpStatus {
                endpoint,
                status: status.as_u16(),
                attempts,
            }));
        }
        // WeChat labels JSON `text/plain` on some routes (§0): read bytes, ignore the header.
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(error) => return lost(error),
        };
        match decode::<T>(endpoint, &body) {
            Ok(Decoded::Success(value)) => {
                tracing::Span::current().record("errcode", 0);
                Attempt::Done(Ok(value))
            }
            Ok(Decoded::WeChatError { errcode, errmsg }) => {
                tracing::Span::current().record("errcode", errcode);
                let error = WeChatError::new(endpoint, errcode, errmsg, after_ambiguous);
                tracing::debug!(
                    endpoint = endpoint.name(),
                    errcode,
                    errmsg = error.raw_errmsg(),
                    "wechat answered an error"
                );
                if errcode == -1 {
                    Attempt::Retry {
                        error: error.into(),
                        ambiguous: true,
                        rerouted: false,
                    }
                } else {
                    Attempt::Done(Err(error.into()))
                }
            }
            Err(error) => Attempt::Done(Err(error)),
        }
    }
}

/// The host of a base URL (`https://api.weixin.qq.com` → `api.weixin.qq.com`),
/// for `server.address`.
fn server_address(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

fn transport_error(
    endpoint: Endpoint,
    attempts: u32,
    failure: TransportFailure,
    error: reqwest::Error,
) -> Error {
    Error::Transport {
        endpoint,
        attempts,
        failure,
        // reqwest's message would include the URL, whose query carries secrets.
        source: Some(error.without_url()),
    }
}

enum Decoded<T> {
    Success(T),
    WeChatError { errcode: i64, errmsg: String },
}

/// Parses a WeChat body: UTF-8 JSON, an `errcode` other than 0 means an error
/// even on HTTP 200 (§0), success bodies may or may not carry `errcode: 0`.
fn decode<T: DeserializeOwned>(endpoint: Endpoint, body: &[u8]) -> Result<Decoded<T>, Error> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| Error::Decode {
        endpoint,
        detail: format!(
            "not JSON ({} at line {} column {})",
            classify(&e),
            e.line(),
            e.column()
        ),
    })?;
    let errcode = match value.get("errcode") {
        None | Some(serde_json::Value::Null) => 0,
        Some(code) => code.as_i64().ok_or_else(|| Error::Decode {
            endpoint,
            detail: "errcode is not an integer".into(),
        })?,
    };
    if errcode != 0 {
        let errmsg = value
            .get("errmsg")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_owned();
        return Ok(Decoded::WeChatError { errcode, errmsg });
    }
    // serde_json's messages name fields and types, never values, so they are safe to keep.
    T::deserialize(value)
        .map(Decoded::Success)
        .map_err(|e| Error::Decode {
            endpoint,
            detail: e.to_string(),
        })
}

fn classify(error: &serde_json::Error) -> &'static str {
    match error.classify() {
        serde_json::error::Category::Io => "i/o",
        serde_json::error::Category::Syntax => "syntax",
        serde_json::error::Category::Data => "data",
        serde_json::error::Category::Eof => "truncated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Thing {
        name: String,
    }

    #[test]
    fn server_address_is_the_bare_host() {
        for (base, host) in [
            ("https://api.weixin.qq.com", "api.weixin.qq.com"),
            ("http://127.0.0.1:9000", "127.0.0.1"),
            ("http://127.0.0.1:9000/prefix", "127.0.0.1"),
            ("api2.weixin.qq.com", "api2.weixin.qq.com"),
        ] {
            assert_eq!(server_address(base), host, "{base}");
        }
    }

    #[test]
    fn decodes_success_bodies_with_or_without_errcode_zero() {
        for body in [
            r#"{"name":"小明🐼"}"#,
            r#"{"errcode":0,"errmsg":"ok","name":"小明🐼"}"#,
        ] {
            match decode::<Thing>(Endpoint::SnsUserInfo, body.as_bytes()) {
                Ok(Decoded::Success(thing)) => assert_eq!(thing.name, "小明🐼"),
                _ => panic!("expected success for {body}"),
            }
        }
    }

    #[test]
    fn a_nonzero_errcode_is_an_error_even_with_other_fields() {
        let body =
            br#"{"errcode":40163,"errmsg":"code been used, rid: 645ca8fe-448ccd42-1a78a4b0"}"#;
        match decode::<Thing>(Endpoint::JsCode2Session, body) {
            Ok(Decoded::WeChatError { errcode, errmsg }) => {
                assert_eq!(errcode, 40163);
                assert!(errmsg.contains("rid:"));
            }
            _ => panic!("expected a wechat error"),
        }
    }

    #[test]
    fn invalid_utf8_and_non_json_bodies_are_decode_errors() {
        assert!(matches!(
            decode::<Thing>(Endpoint::SnsUserInfo, b"<html>"),
            Err(Error::Decode { .. })
        ));
        assert!(matches!(
            decode::<Thing>(Endpoint::SnsUserInfo, b"{\"name\":\"\xff\"}"),
            Err(Error::Decode { .. })
        ));
    }
}
