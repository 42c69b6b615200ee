//! What identifies the service to WeChat for one app.

use wechat_types::{AppId, AppSecret};

/// An app's id and secret.
#[derive(Debug, Clone)]
pub struct AppCredentials {
    /// The app.
    pub app_id: AppId,
    /// Its AppSecret.
    pub secret: AppSecret,
}
