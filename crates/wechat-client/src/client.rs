//! The client: one instance for every app, cheap to clone.

use std::sync::Arc;

use crate::config::ClientConfig;
use crate::transport::Transport;

/// A typed client for the WeChat endpoints wechat-identity uses.
///
/// It holds no per-app state: each call names its app and credentials. App
/// access tokens are owned by [`crate::AppTokenManager`], built on top of it.
#[derive(Debug, Clone)]
pub struct WeChatClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    transport: Transport,
    open_base: String,
}

impl WeChatClient {
    /// Builds a client. Installs the ring rustls provider for the process if none
    /// is installed yet.
    ///
    /// # Errors
    /// The HTTP client could not be built (no usable TLS configuration).
    pub fn new(config: ClientConfig) -> Result<Self, reqwest::Error> {
        // Err only means a provider is installed already, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self {
            inner: Arc::new(Inner {
                transport: Transport::new(&config)?,
                open_base: config.open_base.trim_end_matches('/').to_owned(),
            }),
        })
    }

    pub(crate) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    pub(crate) fn open_base(&self) -> &str {
        &self.inner.open_base
    }
}
