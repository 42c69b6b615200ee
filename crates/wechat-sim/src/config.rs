//! What the simulated WeChat knows before the first request: its apps and its quirks.

use std::time::Duration;

use wechat_types::AppKind;

/// How the simulator is set up: registered apps and the knobs for quirks the docs disagree on.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Apps registered with the fake WeChat; requests naming any other appid get 40013.
    pub apps: Vec<SimApp>,
    /// Added before every WeChat endpoint answer (never before a control API answer).
    pub latency: Duration,
    /// Content-Type of every `/sns/*` answer. WECHAT_API.md §0: WeChat sends `text/plain` there.
    pub sns_content_type: String,
    /// WECHAT_API.md §10: the doc table says `countryCode` is a string, its example a number.
    /// `false` (the default) answers the string `"86"`, `true` the number `86`.
    pub phone_country_code_as_number: bool,
}

impl SimConfig {
    /// A config with these apps and every other field at its default.
    pub fn new(apps: Vec<SimApp>) -> Self {
        Self {
            apps,
            latency: Duration::ZERO,
            sns_content_type: "text/plain".to_owned(),
            phone_country_code_as_number: false,
        }
    }

    /// The zero-credential demo world: three apps bound to one Open Platform account
    /// (`demo-open`) and a mini program bound to none.
    pub fn demo() -> Self {
        Self::new(vec![
            SimApp::new(
                "wxd000000000000001",
                "demo-mini-program-secret-0001",
                AppKind::MiniProgram,
                Some("demo-open"),
            ),
            SimApp::new(
                "wxd000000000000002",
                "demo-official-account-secret-02",
                AppKind::OfficialAccount,
                Some("demo-open"),
            ),
            SimApp::new(
                "wxd000000000000003",
                "demo-website-secret-00000000003",
                AppKind::Website,
                Some("demo-open"),
            ),
            SimApp::new(
                "wxd000000000000004",
                "demo-lone-mini-program-secret-4",
                AppKind::MiniProgram,
                None,
            ),
        ])
    }

    /// The registered app with this appid, if any.
    pub(crate) fn app(&self, app_id: &str) -> Option<&SimApp> {
        self.apps.iter().find(|app| app.app_id == app_id)
    }
}

/// One app registered with the fake WeChat.
#[derive(Clone, Debug)]
pub struct SimApp {
    /// The appid, e.g. `wxd000000000000001`.
    pub app_id: String,
    /// The AppSecret; a wrong one gets 40125 (WECHAT_API.md §8, §12).
    pub secret: String,
    /// Which kind of app this is; it decides which endpoints and scopes it may use.
    pub kind: AppKind,
    /// The Open Platform account the app is bound to, the namespace of unionids.
    /// `None`: the app is not bound and no unionid is ever returned for it.
    pub open_platform: Option<String>,
    /// The host every OAuth `redirect_uri` must have (WECHAT_API.md §13); `None` accepts any.
    pub oauth_domain: Option<String>,
}

impl SimApp {
    /// An app with no OAuth callback domain configured.
    pub fn new(app_id: &str, secret: &str, kind: AppKind, open_platform: Option<&str>) -> Self {
        Self {
            app_id: app_id.to_owned(),
            secret: secret.to_owned(),
            kind,
            open_platform: open_platform.map(str::to_owned),
            oauth_domain: None,
        }
    }
}
