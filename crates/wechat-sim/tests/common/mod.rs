//! Shared setup: a simulator on a random port and a plain HTTP client aimed at it.

#![allow(dead_code, clippy::unwrap_used)]

use reqwest::header::CONTENT_TYPE;
use serde_json::Value;
use wechat_sim::{RunningSim, SimConfig, Simulator};

pub(crate) const MINI: &str = "wxd000000000000001";
pub(crate) const MINI_SECRET: &str = "demo-mini-program-secret-0001";
pub(crate) const OFFICIAL: &str = "wxd000000000000002";
pub(crate) const OFFICIAL_SECRET: &str = "demo-official-account-secret-02";
pub(crate) const WEBSITE: &str = "wxd000000000000003";
pub(crate) const WEBSITE_SECRET: &str = "demo-website-secret-00000000003";
pub(crate) const LONE_MINI: &str = "wxd000000000000004";
pub(crate) const LONE_MINI_SECRET: &str = "demo-lone-mini-program-secret-4";

pub(crate) struct Harness {
    pub(crate) sim: Simulator,
    pub(crate) running: RunningSim,
    pub(crate) http: reqwest::Client,
}

/// A WeChat answer: its Content-Type and its JSON body.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn errcode(&self) -> i64 {
        self.body["errcode"].as_i64().unwrap_or(0)
    }

    pub(crate) fn text(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {}", self.body))
            .to_owned()
    }
}

pub(crate) async fn start() -> Harness {
    start_with(SimConfig::demo()).await
}

pub(crate) async fn start_with(config: SimConfig) -> Harness {
    // reqwest refuses to build a client without a rustls provider, even for http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::new(config);
    let running = sim.spawn().await.unwrap();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Harness { sim, running, http }
}

impl Harness {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.running.base_url)
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .map(|value| value.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {text}"));
        Answer {
            status,
            content_type,
            body,
        }
    }

    /// GET a WeChat endpoint with these query parameters.
    pub(crate) async fn get(&self, path: &str, query: &[(&str, &str)]) -> Answer {
        let response = self
            .http
            .get(self.url(path))
            .query(query)
            .send()
            .await
            .unwrap();
        Self::answer(response).await
    }

    /// POST a JSON body to a WeChat endpoint.
    pub(crate) async fn post_json(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Answer {
        let response = self
            .http
            .post(self.url(path))
            .query(query)
            .json(body)
            .send()
            .await
            .unwrap();
        Self::answer(response).await
    }

    pub(crate) async fn jscode2session(&self, app_id: &str, secret: &str, code: &str) -> Answer {
        self.get(
            "/sns/jscode2session",
            &[
                ("appid", app_id),
                ("secret", secret),
                ("js_code", code),
                ("grant_type", "authorization_code"),
            ],
        )
        .await
    }

    pub(crate) async fn cgi_token(&self, app_id: &str, secret: &str) -> Answer {
        self.get(
            "/cgi-bin/token",
            &[
                ("grant_type", "client_credential"),
                ("appid", app_id),
                ("secret", secret),
            ],
        )
        .await
    }

    pub(crate) async fn stable_token(
        &self,
        app_id: &str,
        secret: &str,
        force_refresh: bool,
    ) -> Answer {
        let body = serde_json::json!({
            "grant_type": "client_credential",
            "appid": app_id,
            "secret": secret,
            "force_refresh": force_refresh,
        });
        self.post_json("/cgi-bin/stable_token", &[], &body).await
    }

    pub(crate) async fn phone_number(&self, access_token: &str, code: &str) -> Answer {
        let body = serde_json::json!({ "code": code });
        self.post_json(
            "/wxa/business/getuserphonenumber",
            &[("access_token", access_token)],
            &body,
        )
        .await
    }

    pub(crate) async fn oauth_exchange(&self, app_id: &str, secret: &str, code: &str) -> Answer {
        self.get(
            "/sns/oauth2/access_token",
            &[
                ("appid", app_id),
                ("secret", secret),
                ("code", code),
                ("grant_type", "authorization_code"),
            ],
        )
        .await
    }

    pub(crate) async fn user_info(&self, access_token: &str, openid: &str) -> Answer {
        self.get(
            "/sns/userinfo",
            &[
                ("access_token", access_token),
                ("openid", openid),
                ("lang", "zh_CN"),
            ],
        )
        .await
    }
}

/// The errmsg ends with a request id: `…, rid: 645ca8fe-448ccd42-1a78a4b0`.
pub(crate) fn assert_rid_suffix(errmsg: &str) {
    let (_, rid) = errmsg
        .rsplit_once("rid: ")
        .unwrap_or_else(|| panic!("no rid in {errmsg:?}"));
    let groups: Vec<&str> = rid.split('-').collect();
    assert_eq!(groups.len(), 3, "rid {rid:?}");
    assert!(
        groups
            .iter()
            .all(|group| group.len() == 8 && group.chars().all(|c| c.is_ascii_hexdigit())),
        "rid {rid:?}"
    );
}
