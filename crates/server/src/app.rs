//! Start-up and shutdown: from a resolved config to three listening servers
//! (gRPC, the public HTTP shim, and the admin listener with `/metrics`), and a
//! drain on the way out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use storage::{KeyRing, Storage, StorageConfig, StorageError};
use tokio::net::TcpListener;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use wechat_client::{
    AppTokenManager, ClientConfig, RetryPolicy, TokenEndpoint, TokenManagerConfig, WeChatClient,
};

use crate::apps::Apps;
use crate::auth::CallerAuth;
use crate::config::{ResolvedConfig, TokenEndpointName};
use crate::grpc::IdentityGrpc;
use crate::grpc_server::{GrpcLimits, serve, standard_routes, tls_config};
use crate::http::limits::{ClientLimiter, OAuthLimits, client_limiter, limit};
use crate::http::serve::ConnectionLimits;
use crate::http::{OAuthShim, Readiness, ShimState, oauth_routes, plain_routes};
use crate::pb;
use crate::pb::identity_service_server::IdentityServiceServer;
use crate::profile_cache::ProfileCache;
use crate::service::{Lifetimes, Services};
use crate::sessions::jwt::{SigningKey, TokenKeys};
use crate::sessions::verify_cache::VerifyCache;
use crate::web_binding::WebBinding;

/// The gRPC health name of readiness, beside the overall "": NOT_SERVING while
/// the database is unreachable and from the first moment of a shutdown.
pub const SERVICE_NAME: &str = "wechat.identity.v1.IdentityService";

/// The gRPC health name of liveness: SERVING while the process serves at all,
/// whatever the database does, so a liveness probe never restarts a replica
/// for an outage elsewhere.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database or the encryption keys.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else at start, said plainly.
    #[error("{0}")]
    Other(String),
}

/// The listeners of a service.
#[derive(Debug)]
pub struct Listeners {
    /// gRPC.
    pub grpc: TcpListener,
    /// The HTTP shim, public: browsers and WeChat.
    pub http: TcpListener,
    /// The admin listener: `/metrics` and `/healthz`, for scrapers only.
    pub admin: TcpListener,
}

/// A built service, listening, not yet serving.
#[derive(Debug)]
pub struct Application {
    grpc_listener: TcpListener,
    http_listener: TcpListener,
    admin_listener: TcpListener,
    services: Arc<Services>,
    health: HealthReporter,
    routes: tonic::service::Routes,
    http: axum::Router,
    shim_connections: ConnectionLimits,
    client_limiter: ClientLimiter,
    admin: axum::Router,
    limits: GrpcLimits,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown_grace: Duration,
    health_check_interval: Duration,
    open_mode: bool,
}

#[derive(Debug)]
struct StorageReadiness(Storage);

#[async_trait::async_trait]
impl Readiness for StorageReadiness {
    async fn ready(&self) -> Result<(), String> {
        self.0
            .ping()
            .await
            .map_err(|_| "database unreachable".to_owned())
    }
}

/// Connects storage as configured: keys checked, migrations applied when asked.
///
/// # Errors
/// Bad keys, an unreachable database, a failed migration.
pub async fn open_storage(resolved: &ResolvedConfig, migrate: bool) -> Result<Storage, StartError> {
    let storage = connect_storage(resolved, resolved.config.database.acquire_timeout).await?;
    if migrate {
        storage.migrate().await?;
    }
    let pending = storage.pending_migrations().await?;
    if !pending.is_empty() {
        return Err(StartError::Other(format!(
            "the database schema is behind this binary (migrations {pending:?} not applied): \
             run `wechat-identity migrate`, or set database.migrate_on_start = true"
        )));
    }
    storage.verify_keys().await?;
    Ok(storage)
}

/// The configured keys as a ring, the current one first.
///
/// # Errors
/// No key, or a key that is not base64 of 32 bytes.
pub fn key_ring(resolved: &ResolvedConfig) -> Result<KeyRing, StartError> {
    let mut keys = resolved.encryption_keys.iter().cloned();
    let current = keys
        .next()
        .ok_or_else(|| StartError::Other("no encryption key configured".into()))?;
    Ok(KeyRing::new(current, keys.collect())?)
}

/// Connects storage as configured, waiting at most `acquire_timeout` for a
/// connection; no migration, no key check, nothing written.
///
/// # Errors
/// Bad keys, an unreachable database.
pub async fn connect_storage(
    resolved: &ResolvedConfig,
    acquire_timeout: Duration,
) -> Result<Storage, StartError> {
    let database = &resolved.config.database;
    let config = StorageConfig {
        url: resolved.database_url.expose_secret().to_owned(),
        sqlite_readers: database.sqlite_readers,
        sqlite_write_queue: database.sqlite_write_queue,
        postgres_max_connections: database.postgres_max_connections,
        acquire_timeout,
        ..StorageConfig::new(resolved.database_url.expose_secret())
    };
    Ok(Storage::connect(&config, key_ring(resolved)?).await?)
}

impl Application {
    /// Builds the service from `resolved`: storage, WeChat client (pointed at
    /// `wechat_base` when given, e.g. the demo's simulator), keys, listeners.
    ///
    /// # Errors
    /// Any start-up failure, said so that an operator knows what to fix.
    pub async fn build(
        resolved: ResolvedConfig,
        wechat_base: Option<String>,
    ) -> Result<Self, StartError> {
        let bind = |addr: SocketAddr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { addr, source })
        };
        let listeners = Listeners {
            grpc: bind(resolved.config.server.grpc_listen).await?,
            http: bind(resolved.config.server.http_listen).await?,
            admin: bind(resolved.config.server.admin_listen).await?,
        };
        Self::build_on(resolved, wechat_base, listeners).await
    }

    /// As [`Self::build`], on listeners bound already (the configured listen
    /// addresses are then ignored): tests bind port 0 first to know the URL.
    ///
    /// # Errors
    /// Any start-up failure, said so that an operator knows what to fix.
    pub async fn build_on(
        resolved: ResolvedConfig,
        wechat_base: Option<String>,
        listeners: Listeners,
    ) -> Result<Self, StartError> {
        let config = &resolved.config;
        for warning in &resolved.warnings {
            tracing::warn!(%warning, "config looks like a mistake");
        }
        check_exposure(&listeners, &resolved)?;
        let tls = resolved
            .grpc_tls
            .as_ref()
            .map(tls_config)
            .transpose()
            .map_err(StartError::Other)?;
        let storage = open_storage(&resolved, config.database.migrate_on_start).await?;

        let client_config = match wechat_base {
            Some(base) => ClientConfig::single_host(base),
            None => ClientConfig {
                api_base: config.wechat.api_base.clone(),
                api_fallback: Some(config.wechat.api_fallback.clone()).filter(|f| !f.is_empty()),
                open_base: config.wechat.open_base.clone(),
                ..ClientConfig::default()
            },
        };
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let client_config = ClientConfig {
            observer: Some(metrics.clone()),
            request_timeout: config.wechat.request_timeout,
            retry: RetryPolicy {
                max_attempts: config.wechat.max_attempts,
                ..RetryPolicy::default()
            },
            ..client_config
        };
        let wechat = WeChatClient::new(client_config)
            .map_err(|e| StartError::Other(format!("wechat client: {e}")))?;
        let apps = Apps::new(resolved.apps.clone());
        let token_config = TokenManagerConfig {
            endpoint: match config.wechat.token_endpoint {
                TokenEndpointName::Stable => TokenEndpoint::Stable,
                TokenEndpointName::Classic => TokenEndpoint::Classic,
            },
            ..TokenManagerConfig::default()
        };
        let token_cache: Arc<dyn wechat_client::TokenCache> =
            match (&resolved.redis_url, &config.redis) {
                (Some(url), Some(redis)) => Arc::new(
                    storage::RedisTokenCache::connect(
                        url.expose_secret(),
                        &redis.key_prefix,
                        storage.clone(),
                    )
                    .await
                    .map_err(|e| StartError::Other(format!("redis: {e}")))?,
                ),
                _ => storage.token_cache(),
            };
        let tokens = Arc::new(AppTokenManager::new(
            wechat.clone(),
            apps.credentials(),
            token_cache,
            token_config,
        ));
        let keys = Arc::new(load_signing_keys(&storage, &resolved).await?);
        let public_base_url = url::Url::parse(&config.server.public_base_url)
            .map_err(|e| StartError::Other(format!("server.public_base_url: {e}")))?;
        let web_binding = Arc::new(web_binding(&storage, &public_base_url).await?);
        let services = Arc::new(Services {
            storage: storage.clone(),
            wechat,
            tokens,
            apps: apps.clone(),
            keys: keys.clone(),
            lifetimes: Lifetimes {
                access: config.sessions.access_ttl,
                session: storage::SessionLifetimes {
                    refresh_ttl: config.sessions.refresh_ttl,
                    max_lifetime: config.sessions.max_lifetime,
                    reuse_grace: config.sessions.refresh_reuse_grace,
                },
            },
            metrics: metrics.clone(),
            verify_cache: Arc::new(VerifyCache::new(
                storage.clone(),
                config.sessions.verify_cache_entries,
                config.sessions.revocation_propagation,
            )),
            profile_cache: Arc::new(ProfileCache::new(
                storage.clone(),
                config.profiles.cache_entries,
                config.profiles.cache_propagation,
            )),
            web_binding,
        });

        let auth = CallerAuth::new(&resolved.callers);
        let identity = IdentityServiceServer::with_interceptor(
            IdentityGrpc::new(services.clone(), config.server.request_timeout),
            auth.clone(),
        );
        let (health, routes) = standard_routes(&[pb::FILE_DESCRIPTOR_SET])
            .map_err(|e| StartError::Other(format!("reflection: {e}")))?;
        let routes = routes.add_service(identity);

        let mp_verify_tokens = apps
            .iter()
            .filter_map(|app| app.mp_verify_token.clone())
            .map(|t| (t, ()))
            .collect();
        let http = plain_routes(ShimState {
            jwks: keys.jwks().into(),
            mp_verify_tokens: Arc::new(mp_verify_tokens),
            readiness: Arc::new(StorageReadiness(storage)),
        });
        let oauth_limits = OAuthLimits {
            per_second: config.server.oauth_rate_limit.per_second,
            burst: config.server.oauth_rate_limit.burst,
            max_in_flight: config.server.http_max_in_flight,
            // The callback answers by its own deadline; this is the backstop.
            request_timeout: config.server.request_timeout + Duration::from_secs(2),
            trusted_proxies: resolved.trusted_proxies.clone().into(),
        };
        let client_limiter = client_limiter(&oauth_limits).map_err(StartError::Other)?;
        let oauth = limit(
            oauth_routes(OAuthShim {
                services: services.clone(),
                public_base_url,
                request_timeout: config.server.request_timeout,
            }),
            &oauth_limits,
            client_limiter.clone(),
            metrics.clone(),
        );
        let http = http.merge(oauth);
        let admin = crate::metrics::routes(crate::metrics::MetricsState {
            metrics,
            tokens: services.tokens.clone(),
            storage: services.storage.clone(),
        })
        .route("/healthz", axum::routing::get(|| async { "ok" }));

        Ok(Self {
            grpc_listener: listeners.grpc,
            http_listener: listeners.http,
            admin_listener: listeners.admin,
            services,
            health,
            routes,
            http,
            shim_connections: ConnectionLimits {
                header_read_timeout: config.server.http_header_read_timeout,
                max_connections: config.server.http_max_connections,
            },
            client_limiter,
            admin,
            limits: GrpcLimits {
                request_timeout: config.server.request_timeout,
                max_in_flight: config.server.max_in_flight,
            },
            tls,
            shutdown_grace: config.server.shutdown_grace,
            health_check_interval: config.server.health_check_interval,
            open_mode: auth.is_open(),
        })
    }

    /// Adds routes to the HTTP shim (the demo's landing page).
    #[must_use]
    pub fn with_http_routes(mut self, routes: axum::Router) -> Self {
        self.http = self.http.merge(routes);
        self
    }

    /// Where gRPC listens (the real port when configured as 0).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the HTTP shim listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Where the admin listener (`/metrics`) listens.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Whether calls need no caller key (no keys configured, loopback only).
    pub fn open_mode(&self) -> bool {
        self.open_mode
    }

    /// The service's storage, for tests that look at what was written.
    pub fn storage(&self) -> &Storage {
        &self.services.storage
    }

    /// Serves until `shutdown` resolves; then reports NOT_SERVING, stops
    /// accepting, and lets calls in flight finish within the grace period.
    ///
    /// # Errors
    /// A server failed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), StartError> {
        let Self {
            grpc_listener,
            http_listener,
            admin_listener,
            services,
            health,
            routes,
            http,
            shim_connections,
            client_limiter,
            admin,
            limits,
            tls,
            shutdown_grace,
            health_check_interval,
            ..
        } = self;
        for name in ["", SERVICE_NAME, LIVENESS_SERVICE] {
            health
                .set_service_status(name, ServingStatus::Serving)
                .await;
        }
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let grpc = tokio::spawn(serve(
            grpc_listener,
            routes,
            limits,
            tls,
            stopped(stop_rx.clone()),
        ));
        let http = http.layer(axum::middleware::from_fn(crate::http::trace_request));
        let shim = tokio::spawn(crate::http::serve::serve(
            http_listener,
            http,
            shim_connections,
            stopped(stop_rx),
        ));
        // Scrapes keep working through the drain: the admin server stops last.
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = tokio::spawn(crate::http::serve::serve(
            admin_listener,
            admin,
            shim_connections,
            async move {
                let _ = admin_stopped.await;
            },
        ));
        let monitor = tokio::spawn(monitor_storage(
            services.storage.clone(),
            health.clone(),
            health_check_interval,
        ));
        let sweeper = tokio::spawn(sweep_expired(services.storage.clone()));
        let epoch = tokio::spawn(services.verify_cache.clone().follow_epoch());
        let profile_epochs = tokio::spawn(services.profile_cache.clone().follow_epochs());
        let forget = tokio::spawn(forget_idle_clients(client_limiter));

        shutdown.await;
        tracing::info!(
            grace_secs = shutdown_grace.as_secs(),
            "shutting down: not serving, draining calls in flight"
        );
        monitor.abort();
        sweeper.abort();
        epoch.abort();
        profile_epochs.abort();
        forget.abort();
        for name in ["", SERVICE_NAME] {
            health
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        let _ = stop_tx.send(true);
        let drained =
            tokio::time::timeout(shutdown_grace, async { (grpc.await, shim.await) }).await;
        let _ = admin_stop.send(());
        let admin = tokio::time::timeout(Duration::from_secs(1), admin).await;
        if !matches!(admin, Ok(Ok(Ok(())))) {
            tracing::warn!("the admin listener did not stop cleanly");
        }
        match drained {
            Ok((Ok(Ok(())), Ok(Ok(())))) => Ok(()),
            Ok((grpc, shim)) => Err(StartError::Other(format!(
                "server failed: grpc {grpc:?}, http {shim:?}"
            ))),
            Err(_) => {
                tracing::warn!("grace period over with calls still in flight; exiting");
                Ok(())
            }
        }
    }
}

/// The browser-binding keys, derived from the database's lookup key so that
/// every replica checks the states and cookies another issued.
async fn web_binding(
    storage: &Storage,
    public_base_url: &url::Url,
) -> Result<WebBinding, StartError> {
    let state_key = storage.derived_key("web-login/state-mac/v1").await?;
    let cookie_key = storage.derived_key("web-login/cookie/v1").await?;
    Ok(WebBinding::new(
        state_key.expose_secret(),
        cookie_key.expose_secret(),
        public_base_url.scheme() == "https",
    ))
}

/// Refuses gRPC in clear off loopback unless allowed (the listener may be
/// bound by a caller, so its real address is checked, not only the config),
/// and says at start what is exposed on purpose.
fn check_exposure(listeners: &Listeners, resolved: &ResolvedConfig) -> Result<(), StartError> {
    let server = &resolved.config.server;
    let grpc = listeners
        .grpc
        .local_addr()
        .map_err(|e| StartError::Other(format!("grpc listener: {e}")))?;
    let tls = resolved.grpc_tls.is_some();
    if let Some(problem) = crate::config::plaintext_problem(grpc, tls, server.allow_plaintext) {
        return Err(StartError::Other(problem));
    }
    if !grpc.ip().is_loopback() && !tls {
        tracing::warn!(
            grpc = %grpc,
            "gRPC serves without TLS off loopback (server.allow_plaintext = true): \
             only safe behind a service mesh that provides mutual TLS"
        );
    }
    if let Ok(admin) = listeners.admin.local_addr()
        && !admin.ip().is_loopback()
    {
        tracing::info!(
            admin = %admin,
            "the admin listener (/metrics) is off loopback by configuration: \
             keep it out of every Service and ingress"
        );
    }
    Ok(())
}

async fn load_signing_keys(
    storage: &Storage,
    resolved: &ResolvedConfig,
) -> Result<TokenKeys, StartError> {
    let mut stored = storage.active_signing_keys().await?;
    if stored.is_empty() && resolved.signing_key.is_none() {
        let (key, pkcs8) = SigningKey::generate().map_err(|e| StartError::Other(e.to_string()))?;
        // Several replicas may race here: one key wins, and all read it back.
        if storage
            .insert_first_signing_key(key.kid(), &pkcs8, &key.public_jwk(), SystemTime::now())
            .await?
        {
            tracing::info!(kid = key.kid(), "generated a session signing key");
        }
        stored = storage.active_signing_keys().await?;
    }
    // The newest key first (ties broken by kid, so every replica picks the same one).
    stored.sort_by(|a, b| {
        b.created_at
            .cmp(&a.created_at)
            .then_with(|| a.kid.cmp(&b.kid))
    });
    let mut keys = stored
        .iter()
        .map(|k| SigningKey::from_pkcs8(k.private_key.expose_secret()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Other(e.to_string()))?
        .into_iter();
    // A configured key signs and every stored one still verifies; without
    // one, the newest stored key signs.
    let current = match &resolved.signing_key {
        Some(pem) => SigningKey::from_pem(pem.expose_secret())
            .map_err(|e| StartError::Other(format!("sessions.signing_key: {e}")))?,
        None => keys
            .next()
            .ok_or_else(|| StartError::Other("no signing key".into()))?,
    };
    let others = keys.map(|k| k.public_key().to_vec()).collect();
    let sessions = &resolved.config.sessions;
    Ok(TokenKeys::new(
        current,
        others,
        sessions.issuer.clone(),
        sessions.audience.clone(),
    ))
}

/// Reports NOT_SERVING while the database is unreachable.
async fn monitor_storage(storage: Storage, health: HealthReporter, every: Duration) {
    let mut serving = true;
    loop {
        tokio::time::sleep(every).await;
        let reachable = storage.ping().await.is_ok();
        if reachable != serving {
            serving = reachable;
            let status = if reachable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            tracing::warn!(reachable, "database reachability changed");
            for name in ["", SERVICE_NAME] {
                health.set_service_status(name, status).await;
            }
        }
    }
}

/// Deletes expired states, tickets, used codes and sessions in small batches.
async fn sweep_expired(storage: Storage) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        match storage.sweep_expired(SystemTime::now(), 500).await {
            Ok(report) => tracing::debug!(?report, "swept expired rows"),
            Err(error) => tracing::warn!(%error, "sweep failed; will retry"),
        }
    }
}

/// Forgets the rate-limit state of clients that have been quiet, so that a
/// flood from many addresses cannot grow it without bound.
async fn forget_idle_clients(limiter: ClientLimiter) {
    loop {
        tokio::time::sleep(Duration::from_secs(60)).await;
        limiter.retain_recent();
        limiter.shrink_to_fit();
    }
}

/// A fresh base64 encryption key, for the demo's first start.
pub fn generate_encryption_key() -> SecretString {
    KeyRing::generate_key()
}
