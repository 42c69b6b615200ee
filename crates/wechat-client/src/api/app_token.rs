//! App access tokens (WECHAT_API.md §8, §9). Callers normally go through
//! [`crate::AppTokenManager`], which caches and shares them.

use serde::Deserialize;

use crate::client::WeChatClient;
use crate::credentials::AppCredentials;
use crate::deadline::Deadline;
use crate::endpoint::Endpoint;
use crate::error::Error;
use crate::transport::Request;
use wechat_types::AccessToken;

/// A freshly issued app access token.
#[derive(Debug, Clone, Deserialize)]
pub struct AppTokenResponse {
    /// The token; WeChat reserves up to 512 characters for it.
    pub access_token: AccessToken,
    /// Seconds of validity, at most 7200.
    pub expires_in: u64,
}

impl WeChatClient {
    /// `POST cgi-bin/stable_token` (§9). With `force_refresh` WeChat invalidates
    /// the previous token, at most 20 times a day and 30 s apart; such a request
    /// is not retried after an ambiguous failure.
    ///
    /// # Errors
    /// `AppMisconfigured` (wrong appid or secret, IP allowlist), `QuotaExceeded`,
    /// `RateLimited`, `Busy`, transport errors.
    pub async fn fetch_stable_token(
        &self,
        app: &AppCredentials,
        force_refresh: bool,
        deadline: Deadline,
    ) -> Result<AppTokenResponse, Error> {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app.app_id.as_str(),
            "secret": app.secret.expose_secret(),
            "force_refresh": force_refresh,
        });
        let mut request = Request::post_json(Endpoint::StableToken, Vec::new(), body);
        request.retry_ambiguous = !force_refresh;
        self.transport().call(request, deadline).await
    }

    /// `GET cgi-bin/token` (§8): every call issues a new token and retires the
    /// previous one after 5 minutes, and counts against the 2000-a-day quota.
    ///
    /// # Errors
    /// As [`Self::fetch_stable_token`].
    pub async fn fetch_classic_token(
        &self,
        app: &AppCredentials,
        deadline: Deadline,
    ) -> Result<AppTokenResponse, Error> {
        let request = Request::get(
            Endpoint::Token,
            vec![
                ("grant_type", "client_credential"),
                ("appid", app.app_id.as_str()),
                ("secret", app.secret.expose_secret()),
            ],
        );
        self.transport().call(request, deadline).await
    }
}
