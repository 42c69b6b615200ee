//! Where WeChat lives and how patiently to talk to it.

use std::time::Duration;

use crate::retry::RetryPolicy;

/// Base URLs and timeouts for a [`crate::WeChatClient`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API host, `https://api.weixin.qq.com` (WECHAT_API.md §13).
    pub api_base: String,
    /// The disaster-recovery host used while `api_base` is unreachable,
    /// `https://api2.weixin.qq.com`; `None` disables failover.
    pub api_fallback: Option<String>,
    /// The host of the browser authorize pages, `https://open.weixin.qq.com`.
    pub open_base: String,
    /// The longest a single attempt may take, body included.
    pub request_timeout: Duration,
    /// The longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// How long requests go to the fallback before the primary is tried again.
    pub failback_after: Duration,
    /// Told of every finished call, for metrics.
    pub observer: Option<std::sync::Arc<dyn CallObserver>>,
}

/// What one finished WeChat call came to, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct CallOutcome {
    /// The endpoint's name, e.g. `sns/jscode2session`.
    pub endpoint: &'static str,
    /// WeChat's errcode: 0 for success, `None` when WeChat gave none
    /// (unreachable, 5xx, the caller's deadline).
    pub errcode: Option<i64>,
    /// Attempts made, the first included.
    pub attempts: u32,
    /// From the first attempt to the answer.
    pub elapsed: Duration,
}

/// Receives every [`CallOutcome`]; implemented by the server's metrics.
pub trait CallObserver: Send + Sync + std::fmt::Debug {
    /// One call finished.
    fn observe(&self, outcome: CallOutcome);
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            api_fallback: Some("https://api2.weixin.qq.com".into()),
            open_base: "https://open.weixin.qq.com".into(),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            retry: RetryPolicy::default(),
            failback_after: Duration::from_secs(60),
            observer: None,
        }
    }
}

impl ClientConfig {
    /// Every WeChat host at one base URL (a simulator), without failover.
    pub fn single_host(base: impl Into<String>) -> Self {
        let base = base.into();
        Self {
            api_base: base.clone(),
            api_fallback: None,
            open_base: base,
            ..Self::default()
        }
    }
}

/// Which WeChat endpoint issues app access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenEndpoint {
    /// `POST cgi-bin/stable_token` (WECHAT_API.md §9): the same token while valid,
    /// isolated from `cgi-bin/token`, so no fetch knocks another holder's token out.
    #[default]
    Stable,
    /// `GET cgi-bin/token` (§8): every fetch issues a new token and retires the
    /// previous one after 5 minutes. Only for apps that must share tokens with
    /// software that still uses it.
    Classic,
}
