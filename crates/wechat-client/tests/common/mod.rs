//! Shared set-up: the simulator on a free port and a client pointed at it.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use wechat_client::{
    AppCredentials, AppId, AppSecret, AppTokenManager, ClientConfig, InMemoryTokenCache,
    RetryPolicy, TokenCache, TokenManagerConfig, WeChatClient,
};
use wechat_sim::{RunningSim, SimConfig, Simulator};

pub const MINI: &str = "wxd000000000000001";
pub const MINI_SECRET: &str = "demo-mini-program-secret-0001";
pub const OFFICIAL: &str = "wxd000000000000002";
pub const OFFICIAL_SECRET: &str = "demo-official-account-secret-02";
pub const WEBSITE: &str = "wxd000000000000003";
pub const WEBSITE_SECRET: &str = "demo-website-secret-00000000003";
pub const LONE_MINI: &str = "wxd000000000000004";
pub const LONE_MINI_SECRET: &str = "demo-lone-mini-program-secret-4";

pub struct Harness {
    pub sim: Simulator,
    pub running: RunningSim,
    pub client: WeChatClient,
}

/// Retries fast so tests stay quick; three attempts as in production.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
    }
}

pub async fn start() -> Harness {
    start_with(SimConfig::demo()).await
}

pub async fn start_with(config: SimConfig) -> Harness {
    let sim = Simulator::new(config);
    let running = sim.spawn().await.unwrap();
    let client = WeChatClient::new(ClientConfig {
        retry: fast_retry(),
        ..ClientConfig::single_host(&running.base_url)
    })
    .unwrap();
    Harness {
        sim,
        running,
        client,
    }
}

pub fn app(id: &str) -> AppId {
    AppId::new(id).unwrap()
}

pub fn creds(id: &str, secret: &str) -> AppCredentials {
    AppCredentials {
        app_id: app(id),
        secret: AppSecret::new(secret),
    }
}

pub fn demo_apps() -> Vec<AppCredentials> {
    vec![
        creds(MINI, MINI_SECRET),
        creds(OFFICIAL, OFFICIAL_SECRET),
        creds(WEBSITE, WEBSITE_SECRET),
        creds(LONE_MINI, LONE_MINI_SECRET),
    ]
}

impl Harness {
    pub fn manager(&self) -> AppTokenManager {
        self.manager_with(
            Arc::new(InMemoryTokenCache::new()),
            TokenManagerConfig::default(),
        )
    }

    pub fn manager_with(
        &self,
        cache: Arc<dyn TokenCache>,
        config: TokenManagerConfig,
    ) -> AppTokenManager {
        AppTokenManager::new(self.client.clone(), demo_apps(), cache, config)
    }
}
