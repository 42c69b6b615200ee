//! The configuration's shape: one typed struct per section, unknown keys refused.
//! Every default is the value a single-replica production deployment wants;
//! the zero-config demo is built in `demo.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wechat_types::AppKind;

use super::secret_source::SecretSource;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners, limits and shutdown.
    #[serde(default)]
    pub server: ServerConfig,
    /// The database.
    #[serde(default)]
    pub database: DatabaseConfig,
    /// An optional Redis, shared by replicas for the access-token cache.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
    /// Encryption keys for secrets at rest.
    pub encryption: EncryptionConfig,
    /// Session token lifetimes and signing.
    #[serde(default)]
    pub sessions: SessionConfig,
    /// GetProfile's cache.
    #[serde(default)]
    pub profiles: ProfileConfig,
    /// Where WeChat is and how patiently to talk to it.
    #[serde(default)]
    pub wechat: WeChatConfig,
    /// The WeChat apps this service logs users in for.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// The internal services allowed to call, with their keys and permissions.
    #[serde(default)]
    pub callers: Vec<CallerConfig>,
    /// Run the WeChat simulator in-process and point the client at it (demo only).
    #[serde(default)]
    pub simulator: Option<SimulatorConfig>,
}

/// Listeners and request handling.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// gRPC listener. Default `127.0.0.1:50051`.
    pub grpc_listen: SocketAddr,
    /// HTTP shim listener (OAuth redirect and callback, JWKS, health). Default `127.0.0.1:8080`.
    pub http_listen: SocketAddr,
    /// Admin listener: `GET /metrics` and `GET /healthz`, for a scraper, never
    /// for browsers. Default `127.0.0.1:9464`. Off loopback (e.g. `0.0.0.0`
    /// for Prometheus scraping a pod) anyone who reaches the address reads
    /// the metrics: keep it out of every Service and ingress, and say so at
    /// start (the service logs it).
    pub admin_listen: SocketAddr,
    /// Serve gRPC without TLS on an address other than loopback. Refused by
    /// default: caller keys and users' tokens would cross the network in
    /// clear. Set it only where something else encrypts and authenticates
    /// the traffic (a service mesh with mutual TLS); the service warns at
    /// start when it is used. Default false.
    pub allow_plaintext: bool,
    /// The shim's public URL as browsers and WeChat reach it; the OAuth
    /// `redirect_uri` is built from it. Default `http://127.0.0.1:8080`.
    pub public_base_url: String,
    /// Longest time a gRPC call may take when the caller sets no deadline. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// gRPC calls in flight per replica; one more is refused at once with
    /// RESOURCE_EXHAUSTED, so overload never builds a queue. Default 1024.
    pub max_in_flight: usize,
    /// How long SIGTERM waits for in-flight calls. Default 20 s.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often the database is pinged; health reports NOT_SERVING while it
    /// is unreachable. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub health_check_interval: Duration,
    /// TLS for the gRPC listener.
    pub tls: Option<TlsConfig>,
    /// Peers (addresses or CIDR blocks, e.g. `10.0.0.0/8`) whose
    /// `X-Forwarded-For` names the client, for the shim's rate limit: your
    /// ingress or load balancer. Default none: the client is the socket's peer.
    pub trusted_proxies: Vec<String>,
    /// The shim's rate limit per client address on `/oauth/*`.
    pub oauth_rate_limit: RateLimitConfig,
    /// `/oauth/*` requests the shim handles at once; one more is answered 503
    /// at once. Default 256.
    pub http_max_in_flight: usize,
    /// Connections the shim serves at once; more wait in the kernel's
    /// backlog. Default 1024.
    pub http_max_connections: usize,
    /// How long the shim waits for a request's headers (and keeps an idle
    /// connection); a client that trickles them is cut off. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub http_header_read_timeout: Duration,
}

/// A rate limit per client address: a sustained rate and a burst above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests a second, sustained. Default 50 (carrier-grade NAT puts many
    /// real users behind one address).
    pub per_second: u32,
    /// Requests at once above the sustained rate. Default 200.
    pub burst: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_second: 50,
            burst: 200,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            grpc_listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            allow_plaintext: false,
            public_base_url: "http://127.0.0.1:8080".into(),
            request_timeout: Duration::from_secs(10),
            max_in_flight: 1024,
            shutdown_grace: Duration::from_secs(20),
            health_check_interval: Duration::from_secs(5),
            tls: None,
            trusted_proxies: Vec::new(),
            oauth_rate_limit: RateLimitConfig::default(),
            http_max_in_flight: 256,
            http_max_connections: 1024,
            http_header_read_timeout: Duration::from_secs(5),
        }
    }
}

/// TLS, and mutual TLS when `client_ca_file` is set.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
    /// PEM CA bundle; when set, callers must present a certificate it signed.
    pub client_ca_file: Option<PathBuf>,
}

/// The database: `sqlite://path` (embedded, one replica) or `postgres://…` (several).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Connection URL; a password belongs in `url_secret` instead.
    pub url: String,
    /// The whole URL from env or a file, when it carries a password.
    pub url_secret: Option<SecretSource>,
    /// Reader connections for SQLite (writes go through one connection). Default 4.
    pub sqlite_readers: u32,
    /// SQLite: how many writes may wait for the one writer; a write beyond
    /// that is refused at once with `SERVICE_OVERLOADED`. Default 1024.
    pub sqlite_write_queue: usize,
    /// PostgreSQL pool size per replica. Default 16.
    pub postgres_max_connections: u32,
    /// Longest wait for a pooled connection. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
    /// Apply migrations at start (else run `wechat-identity migrate`). Default true.
    pub migrate_on_start: bool,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./data/wechat-identity.db".into(),
            url_secret: None,
            sqlite_readers: 4,
            sqlite_write_queue: 1024,
            postgres_max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            migrate_on_start: true,
        }
    }
}

/// Redis for the shared access-token cache (tokens and refresh lease); without
/// it the database holds them, which is shared by replicas as well.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port/db`; a password belongs in `url_secret`.
    pub url: Option<String>,
    /// The URL from env or a file.
    pub url_secret: Option<SecretSource>,
    /// The prefix of every key, so deployments can share one Redis. Default
    /// `wechat-identity`.
    #[serde(default = "default_redis_prefix")]
    pub key_prefix: String,
}

fn default_redis_prefix() -> String {
    "wechat-identity".into()
}

/// Keys that encrypt secrets at rest (AES-256-GCM).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionConfig {
    /// The key new values are written with.
    pub current_key_id: String,
    /// Every key still needed to read: the current one and older ones.
    pub keys: Vec<EncryptionKeyConfig>,
}

/// One encryption key: base64 of 32 random bytes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EncryptionKeyConfig {
    /// Its id, stored beside every value it encrypts.
    pub id: String,
    /// Where the key is.
    pub key: SecretSource,
}

/// Session tokens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionConfig {
    /// JWT `iss`. Default `wechat-identity`.
    pub issuer: String,
    /// JWT `aud`. Default `wechat-identity`.
    pub audience: String,
    /// Access token lifetime, never beyond the session's end. At least 1 s.
    /// Default 2 h.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    /// Refresh token lifetime, renewed by each rotation up to
    /// `max_lifetime`. At least 1 s. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
    /// The longest a session lives from its login, however often it is
    /// refreshed; then RefreshToken answers SESSION_EXPIRED. At least 1 s.
    /// Default 90 days.
    #[serde(with = "humantime_serde")]
    pub max_lifetime: Duration,
    /// For how long after a rotation the refresh token it retired still
    /// yields a new pair for the same session instead of revoking it (the
    /// client lost the answer, e.g. on a dropped connection). Only the
    /// previous token qualifies; afterwards, or for an older token, reuse
    /// revokes the session. `0s` turns it off; else at least 1 s. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub refresh_reuse_grace: Duration,
    /// The Ed25519 key that signs access tokens, as PEM (`openssl genpkey
    /// -algorithm ed25519`), from env or a file. Unset (the default): a key is
    /// generated once and kept, encrypted, in the database for every replica.
    pub signing_key: Option<SecretSource>,
    /// How long a session revoked on another replica may still verify here:
    /// VerifyToken answers from memory and every replica polls the database's
    /// session epoch four times within this bound. A revocation on this
    /// replica takes effect at once. `0s` reads the session on every call.
    /// Default 1 s.
    #[serde(with = "humantime_serde")]
    pub revocation_propagation: Duration,
    /// Access tokens VerifyToken keeps verified in memory (about 300 bytes
    /// each; `0` verifies every signature). Default 10,000.
    pub verify_cache_entries: usize,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            issuer: "wechat-identity".into(),
            audience: "wechat-identity".into(),
            access_ttl: Duration::from_secs(2 * 3600),
            refresh_ttl: Duration::from_secs(30 * 86_400),
            max_lifetime: Duration::from_secs(90 * 86_400),
            refresh_reuse_grace: Duration::from_secs(10),
            signing_key: None,
            revocation_propagation: Duration::from_secs(1),
            verify_cache_entries: 10_000,
        }
    }
}

/// GetProfile's per-replica cache.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfileConfig {
    /// Profiles GetProfile keeps in memory (about 1 KiB each; `0` reads the
    /// database on every call). Default 10,000.
    pub cache_entries: usize,
    /// How long a profile changed on another replica may still be answered
    /// here: every replica polls the database's profile epochs four times
    /// within this bound. A change made on this replica is seen at once.
    /// `0s` reads the database on every call. At most 60 s; default 1 s.
    #[serde(with = "humantime_serde")]
    pub cache_propagation: Duration,
}

impl Default for ProfileConfig {
    fn default() -> Self {
        Self {
            cache_entries: 10_000,
            cache_propagation: Duration::from_secs(1),
        }
    }
}

/// WeChat's hosts and the client's patience.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WeChatConfig {
    /// Default `https://api.weixin.qq.com`.
    pub api_base: String,
    /// Default `https://api2.weixin.qq.com`; empty disables failover.
    pub api_fallback: String,
    /// Default `https://open.weixin.qq.com`.
    pub open_base: String,
    /// One attempt's limit. Default 5 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Attempts per call, the first included. Default 3.
    pub max_attempts: u32,
    /// `stable` (default) or `classic` (`cgi-bin/token`).
    pub token_endpoint: TokenEndpointName,
}

impl Default for WeChatConfig {
    fn default() -> Self {
        Self {
            api_base: "https://api.weixin.qq.com".into(),
            api_fallback: "https://api2.weixin.qq.com".into(),
            open_base: "https://open.weixin.qq.com".into(),
            request_timeout: Duration::from_secs(5),
            max_attempts: 3,
            token_endpoint: TokenEndpointName::Stable,
        }
    }
}

/// Which endpoint issues app access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointName {
    /// `cgi-bin/stable_token`.
    #[default]
    Stable,
    /// `cgi-bin/token`.
    Classic,
}

/// A WeChat app.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The app id, `wx…`.
    pub app_id: String,
    /// `mini_program`, `official_account` or `website`.
    pub kind: AppKind,
    /// The AppSecret, from env or a file.
    pub secret: SecretSource,
    /// URL prefixes the OAuth `return_to` must match: scheme, host (spelled
    /// as here) and port equal, and a path equal to the entry's or continuing
    /// it after a `/`. A `return_to` with userinfo, a fragment, a backslash,
    /// `;`, an encoded `/` or `\`, or a `.`/`..` segment (encoded or not) is
    /// refused whatever it matches. Needed for Official Accounts and websites.
    #[serde(default)]
    pub allowed_return_to: Vec<String>,
    /// The token of `MP_verify_<token>.txt`, the callback-domain proof.
    #[serde(default)]
    pub mp_verify_token: Option<String>,
}

/// An internal service allowed to call.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallerConfig {
    /// Its name, in logs, traces and the audit trail.
    pub name: String,
    /// Its key, from env or a file (only the SHA-256 is kept in memory).
    pub key: Option<SecretSource>,
    /// Or the hex SHA-256 of its key, so the key itself never reaches this service's config.
    pub key_sha256: Option<String>,
    /// What it may do (`crate::permissions::TABLE` says which RPC needs
    /// what; no permission implies another). Default: `core`.
    #[serde(default = "default_permissions")]
    pub permissions: Vec<Permission>,
}

fn default_permissions() -> Vec<Permission> {
    vec![Permission::Core]
}

/// A caller permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Every RPC but `GetAppAccessToken`: logins, profiles, binding with
    /// proof, sessions.
    Core,
    /// `BindUser` with a bare `identity` (importing without proof), together
    /// with `core`.
    Import,
    /// `GetAppAccessToken`.
    Admin,
}

impl Permission {
    /// The name the config and the proto use.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Core => "core",
            Permission::Import => "import",
            Permission::Admin => "admin",
        }
    }
}

/// The in-process simulator of the demo.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SimulatorConfig {
    /// Its listener. Default `127.0.0.1:9000`.
    pub listen: SocketAddr,
    /// Latency added to every WeChat answer. Default 0.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9000)),
            latency: Duration::ZERO,
        }
    }
}
