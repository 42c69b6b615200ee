//! Turns a parsed [`Config`] into a [`ResolvedConfig`]: secrets read, ids and
//! URLs typed, and every inconsistency reported at once with its place.

use std::collections::HashSet;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use wechat_client::{AppId, AppSecret};
use wechat_types::AppKind;

use super::error::ConfigError;
use super::schema::{AppConfig, CallerConfig, Config, Permission, SessionConfig, TlsConfig};

/// A configuration ready to run: secrets resolved, nothing left to check.
#[derive(Debug)]
pub struct ResolvedConfig {
    /// The non-secret settings as configured.
    pub config: Config,
    /// The apps, with secrets.
    pub apps: Vec<ResolvedApp>,
    /// The callers, with key hashes.
    pub callers: Vec<ResolvedCaller>,
    /// The database URL (it may hold a password).
    pub database_url: SecretString,
    /// The Redis URL, when configured.
    pub redis_url: Option<SecretString>,
    /// `(id, base64 key)`, the current key first.
    pub encryption_keys: Vec<(String, SecretString)>,
    /// The gRPC listener's certificate and key, when TLS is configured.
    pub grpc_tls: Option<GrpcTls>,
    /// The configured access-token signing key (PEM), checked to be Ed25519.
    pub signing_key: Option<SecretString>,
    /// `server.trusted_proxies`, parsed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Values that work but look like mistakes, each with its place and why:
    /// `check-config` prints them, `serve` logs them.
    pub warnings: Vec<String>,
}

/// TLS material for the gRPC listener, read at start.
#[derive(Debug, Clone)]
pub struct GrpcTls {
    /// The PEM certificate chain.
    pub cert_pem: String,
    /// The PEM private key.
    pub key_pem: SecretString,
    /// The PEM CA bundle client certificates must chain to (mutual TLS).
    pub client_ca_pem: Option<String>,
}

/// An app ready to use.
#[derive(Debug, Clone)]
pub struct ResolvedApp {
    /// The app id.
    pub app_id: AppId,
    /// Its kind.
    pub kind: AppKind,
    /// Its secret.
    pub secret: AppSecret,
    /// Parsed `return_to` prefixes.
    pub allowed_return_to: Vec<url::Url>,
    /// The `MP_verify_` token, when configured.
    pub mp_verify_token: Option<String>,
}

/// A caller ready to authenticate.
#[derive(Debug, Clone)]
pub struct ResolvedCaller {
    /// Its name.
    pub name: String,
    /// SHA-256 of its key.
    pub key_sha256: [u8; 32],
    /// What it may do.
    pub permissions: HashSet<Permission>,
}

impl ResolvedConfig {
    /// Where the database is, fit to print: `from secret` when the URL came
    /// from one, else the URL without any password someone put inline (as
    /// `user:pass@` or as sqlx's `?password=`).
    pub fn database_for_display(&self) -> String {
        if self.config.database.url_secret.is_some() {
            return "from secret".into();
        }
        let Ok(mut parsed) = url::Url::parse(self.database_url.expose_secret()) else {
            return "(unparsable URL)".into();
        };
        if parsed.password().is_some() {
            let _ = parsed.set_password(Some("***"));
        }
        if parsed.query().is_some() {
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key.eq_ignore_ascii_case("password") {
                        "***".into()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            parsed.query_pairs_mut().clear().extend_pairs(pairs);
        }
        parsed.to_string()
    }
}

impl Config {
    /// Checks the configuration and reads its secrets from `env` and files.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem, each with its place and
    /// what to do; never a secret's value.
    pub fn resolve(self, env: &[(String, String)]) -> Result<ResolvedConfig, ConfigError> {
        let mut problems = Vec::new();
        let apps = resolve_apps(&self.apps, env, &mut problems);
        let callers = resolve_callers(&self.callers, env, &mut problems);
        check_server(&self, &mut problems);
        let trusted_proxies = self
            .server
            .trusted_proxies
            .iter()
            .filter_map(|entry| {
                crate::http::limits::parse_trusted_proxy(entry)
                    .map_err(|e| problems.push(format!("server.trusted_proxies: {e}")))
                    .ok()
            })
            .collect();
        let grpc_tls = self
            .server
            .tls
            .as_ref()
            .and_then(|tls| read_tls(tls, &mut problems));

        let database_url = match &self.database.url_secret {
            Some(source) => source.resolve(env).unwrap_or_else(|e| {
                problems.push(format!("database.url_secret: {e}"));
                SecretString::from(String::new())
            }),
            None => SecretString::from(self.database.url.clone()),
        };
        let url = database_url.expose_secret();
        if !url.is_empty()
            && !["sqlite:", "postgres:", "postgresql:"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            problems.push("database.url: must start with sqlite:// (embedded) or postgres:// (several replicas)".into());
        }
        let redis_url = self.redis.as_ref().and_then(|redis| {
            let url = match (&redis.url, &redis.url_secret) {
                (_, Some(source)) => source
                    .resolve(env)
                    .map_err(|e| problems.push(format!("redis.url_secret: {e}")))
                    .ok(),
                (Some(url), None) => Some(SecretString::from(url.clone())),
                (None, None) => {
                    problems.push("redis: set url or url_secret, or remove the section".into());
                    None
                }
            }?;
            if !url.expose_secret().starts_with("redis://") {
                problems.push(
                    "redis.url: must start with redis:// (TLS to Redis, rediss://, is not built in yet)"
                        .into(),
                );
            }
            if redis.key_prefix.is_empty()
                || redis.key_prefix.len() > 64
                || redis.key_prefix.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                problems.push("redis.key_prefix: 1 to 64 characters, no spaces".into());
            }
            Some(url)
        });
        let encryption_keys = resolve_keys(&self, env, &mut problems);
        let mut warnings = Vec::new();
        check_session_lifetimes(&self.sessions, &mut problems, &mut warnings);
        if self.sessions.revocation_propagation > Duration::from_secs(60) {
            problems.push(
                "sessions.revocation_propagation: at most 60s (a revoked session must stop verifying soon)"
                    .into(),
            );
        }
        if self.sessions.verify_cache_entries > 10_000_000 {
            problems.push("sessions.verify_cache_entries: at most 10000000".into());
        }
        if self.profiles.cache_propagation > Duration::from_secs(60) {
            problems.push(
                "profiles.cache_propagation: at most 60s (a changed profile must be seen soon)"
                    .into(),
            );
        }
        if self.profiles.cache_entries > 10_000_000 {
            problems.push("profiles.cache_entries: at most 10000000".into());
        }
        let signing_key = self.sessions.signing_key.as_ref().and_then(|source| {
            let pem = source
                .resolve(env)
                .map_err(|e| problems.push(format!("sessions.signing_key: {e}")))
                .ok()?;
            match crate::sessions::jwt::SigningKey::from_pem(pem.expose_secret()) {
                Ok(_) => Some(pem),
                Err(e) => {
                    problems.push(format!(
                        "sessions.signing_key: {e}; make one with `openssl genpkey -algorithm ed25519`"
                    ));
                    None
                }
            }
        });
        if self.wechat.max_attempts == 0 {
            problems.push("wechat.max_attempts: at least 1 (the first attempt counts)".into());
        }
        if !problems.is_empty() {
            return Err(ConfigError::Invalid(problems));
        }
        Ok(ResolvedConfig {
            config: self,
            apps,
            callers,
            database_url,
            redis_url,
            encryption_keys,
            grpc_tls,
            signing_key,
            trusted_proxies,
            warnings,
        })
    }
}

/// Every session duration takes any value from 1 s, so tests can use short
/// ones; zero (or less than a second: JWT times are whole seconds) is an
/// error. Combinations that work but look like mistakes are warnings.
fn check_session_lifetimes(
    sessions: &SessionConfig,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) {
    const SECOND: Duration = Duration::from_secs(1);
    let shown = |duration: Duration| humantime_serde::re::humantime::format_duration(duration);
    for (field, value) in [
        ("access_ttl", sessions.access_ttl),
        ("refresh_ttl", sessions.refresh_ttl),
        ("max_lifetime", sessions.max_lifetime),
    ] {
        if value < SECOND {
            problems.push(format!(
                "sessions.{field}: at least 1s (token times are whole seconds)"
            ));
        }
    }
    let grace = sessions.refresh_reuse_grace;
    if !grace.is_zero() && grace < SECOND {
        problems.push("sessions.refresh_reuse_grace: 0s (no grace) or at least 1s".into());
    }
    if sessions.access_ttl >= sessions.refresh_ttl {
        warnings.push(format!(
            "sessions.access_ttl ({}) is not below refresh_ttl ({}): a client that refreshes when \
             its access token expires finds its refresh token expired as well",
            shown(sessions.access_ttl),
            shown(sessions.refresh_ttl)
        ));
    }
    if sessions.refresh_ttl > sessions.max_lifetime {
        warnings.push(format!(
            "sessions.refresh_ttl ({}) is above max_lifetime ({}): no refresh token outlives its \
             session, so sessions end at max_lifetime",
            shown(sessions.refresh_ttl),
            shown(sessions.max_lifetime)
        ));
    }
    if grace > Duration::from_secs(60) {
        warnings.push(format!(
            "sessions.refresh_reuse_grace ({}) is above 1 minute: for that long after each \
             rotation a copy of the previous refresh token still works; a client retries a lost \
             answer within seconds",
            shown(grace)
        ));
    }
}

/// Reads the PEM files of `server.tls`; each unreadable or non-PEM file is a problem.
fn read_tls(tls: &TlsConfig, problems: &mut Vec<String>) -> Option<GrpcTls> {
    let mut read =
        |field: &str, path: &std::path::Path, marker: &str| match std::fs::read_to_string(path) {
            Ok(text) if text.contains(marker) => Some(text),
            Ok(_) => {
                problems.push(format!(
                    "server.tls.{field}: {} holds no PEM '{marker}' block",
                    path.display()
                ));
                None
            }
            Err(e) => {
                problems.push(format!(
                    "server.tls.{field}: cannot read {}: {e}",
                    path.display()
                ));
                None
            }
        };
    let cert_pem = read("cert_file", &tls.cert_file, "-----BEGIN CERTIFICATE-----");
    let key_pem = read("key_file", &tls.key_file, "PRIVATE KEY-----");
    let client_ca_pem = match &tls.client_ca_file {
        Some(path) => Some(read("client_ca_file", path, "-----BEGIN CERTIFICATE-----")?),
        None => None,
    };
    Some(GrpcTls {
        cert_pem: cert_pem?,
        key_pem: SecretString::from(key_pem?),
        client_ca_pem,
    })
}

fn check_server(config: &Config, problems: &mut Vec<String>) {
    let server = &config.server;
    if config.callers.is_empty() && !server.grpc_listen.ip().is_loopback() {
        problems.push(format!(
            "callers: none configured, but server.grpc_listen is {}: without caller keys the service runs open, \
             which it only does on loopback; add [[callers]] or listen on 127.0.0.1",
            server.grpc_listen
        ));
    }
    if let Some(problem) = plaintext_problem(
        server.grpc_listen,
        server.tls.is_some(),
        server.allow_plaintext,
    ) {
        problems.push(problem);
    }
    let listeners = [
        ("grpc_listen", server.grpc_listen),
        ("http_listen", server.http_listen),
        ("admin_listen", server.admin_listen),
    ];
    for (index, (name, addr)) in listeners.iter().enumerate() {
        for (other, other_addr) in &listeners[index + 1..] {
            let same_ip = addr.ip() == other_addr.ip()
                || addr.ip().is_unspecified()
                || other_addr.ip().is_unspecified();
            if addr.port() != 0 && addr.port() == other_addr.port() && same_ip {
                problems.push(format!(
                    "server.{other}: port {} is taken by server.{name}; each listener needs its own",
                    addr.port()
                ));
            }
        }
    }
    match url::Url::parse(&server.public_base_url) {
        Ok(url) if url.scheme() == "https" && url.host().is_some() => {}
        Ok(url) if url.scheme() == "http" && is_loopback_host(&url) => {}
        Ok(url) if url.scheme() == "http" && url.host().is_some() => problems.push(
            "server.public_base_url: https, as browsers reach the shim (plain http only on a loopback \
             host such as 127.0.0.1 or localhost, for development): the login cookie is Secure"
                .into(),
        ),
        _ => problems.push(
            "server.public_base_url: an absolute https URL, as browsers reach the shim".into(),
        ),
    }
    let limit = server.oauth_rate_limit;
    if limit.per_second == 0 || limit.burst == 0 {
        problems.push("server.oauth_rate_limit: per_second and burst must be above zero".into());
    }
    if limit.per_second > 1_000_000_000 {
        problems.push("server.oauth_rate_limit.per_second: at most 1000000000".into());
    }
    if server.http_max_in_flight == 0 {
        problems.push("server.http_max_in_flight: must be above zero".into());
    }
    if server.http_max_connections == 0 {
        problems.push("server.http_max_connections: must be above zero".into());
    }
    if server.http_header_read_timeout.is_zero() {
        problems.push("server.http_header_read_timeout: must be above zero".into());
    }
    if server.max_in_flight == 0 {
        problems.push("server.max_in_flight: must be above zero".into());
    }
    if server.request_timeout.is_zero() {
        problems.push("server.request_timeout: must be above zero".into());
    }
    if server.health_check_interval.is_zero() {
        problems.push("server.health_check_interval: must be above zero".into());
    }
}

/// Whether `url` names this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Why gRPC may not listen on `grpc_listen` as configured: off loopback
/// without TLS, unless plaintext was allowed on purpose.
pub fn plaintext_problem(
    grpc_listen: std::net::SocketAddr,
    tls: bool,
    allow_plaintext: bool,
) -> Option<String> {
    (!grpc_listen.ip().is_loopback() && !tls && !allow_plaintext).then(|| {
        format!(
            "server.grpc_listen is {grpc_listen} without [server.tls]: caller keys and users' tokens \
             would cross the network in clear; configure [server.tls] (cert_file, key_file), or set \
             server.allow_plaintext = true only where a service mesh provides mutual TLS, or listen \
             on 127.0.0.1"
        )
    })
}

fn resolve_apps(
    apps: &[AppConfig],
    env: &[(String, String)],
    problems: &mut Vec<String>,
) -> Vec<ResolvedApp> {
    let mut seen = HashSet::new();
    let mut resolved = Vec::new();
    for (index, app) in apps.iter().enumerate() {
        let place = format!("apps[{index}] ({})", app.app_id);
        let app_id = match AppId::new(app.app_id.clone()) {
            Ok(id) => id,
            Err(e) => {
                problems.push(format!("apps[{index}].app_id: {e}"));
                continue;
            }
        };
        if !seen.insert(app_id.clone()) {
            problems.push(format!("{place}: configured twice"));
        }
        let secret = match app.secret.resolve(env) {
            Ok(secret) => AppSecret::new(secret.expose_secret()),
            Err(e) => {
                problems.push(format!("{place}.secret: {e}"));
                continue;
            }
        };
        let mut allowed_return_to = Vec::new();
        for prefix in &app.allowed_return_to {
            match url::Url::parse(prefix) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.fragment().is_none() => {
                    allowed_return_to.push(url);
                }
                _ => problems.push(format!("{place}.allowed_return_to: '{prefix}' is not an absolute http(s) URL without a fragment")),
            }
        }
        if app.kind != AppKind::MiniProgram && allowed_return_to.is_empty() {
            problems.push(format!("{place}.allowed_return_to: web apps need at least one return_to prefix for the OAuth shim"));
        }
        if let Some(token) = &app.mp_verify_token
            && (token.is_empty()
                || token.len() > 64
                || !token.bytes().all(|b| b.is_ascii_alphanumeric()))
        {
            problems.push(format!("{place}.mp_verify_token: 1 to 64 letters and digits, as the WeChat console shows it"));
        }
        resolved.push(ResolvedApp {
            app_id,
            kind: app.kind,
            secret,
            allowed_return_to,
            mp_verify_token: app.mp_verify_token.clone(),
        });
    }
    resolved
}

fn resolve_callers(
    callers: &[CallerConfig],
    env: &[(String, String)],
    problems: &mut Vec<String>,
) -> Vec<ResolvedCaller> {
    let mut names = HashSet::new();
    let mut hashes = HashSet::new();
    let mut resolved = Vec::new();
    for (index, caller) in callers.iter().enumerate() {
        let place = format!("callers[{index}] ({})", caller.name);
        let name_ok = !caller.name.is_empty()
            && caller.name.len() <= 64
            && caller
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            problems.push(format!("{place}.name: 1 to 64 of [A-Za-z0-9._-]"));
        }
        if !names.insert(caller.name.clone()) {
            problems.push(format!("{place}: name configured twice"));
        }
        let key_sha256 = match (&caller.key, &caller.key_sha256) {
            (Some(source), None) => match source.resolve(env) {
                Ok(key) if key.expose_secret().len() >= 32 => {
                    Some(Sha256::digest(key.expose_secret().as_bytes()).into())
                }
                Ok(_) => {
                    problems.push(format!(
                        "{place}.key: at least 32 characters (e.g. `openssl rand -base64 32`)"
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("{place}.key: {e}"));
                    None
                }
            },
            (None, Some(hex_digest)) => match hex::decode(hex_digest)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
            {
                Some(digest) => Some(digest),
                None => {
                    problems.push(format!("{place}.key_sha256: 64 hex characters"));
                    None
                }
            },
            _ => {
                problems.push(format!("{place}: set exactly one of key or key_sha256"));
                None
            }
        };
        let Some(key_sha256) = key_sha256 else {
            continue;
        };
        if !hashes.insert(key_sha256) {
            problems.push(format!(
                "{place}: the same key is configured for two callers"
            ));
        }
        if caller.permissions.is_empty() {
            problems.push(format!(
                "{place}.permissions: at least one of core, import, admin"
            ));
        }
        resolved.push(ResolvedCaller {
            name: caller.name.clone(),
            key_sha256,
            permissions: caller.permissions.iter().copied().collect(),
        });
    }
    resolved
}

fn resolve_keys(
    config: &Config,
    env: &[(String, String)],
    problems: &mut Vec<String>,
) -> Vec<(String, SecretString)> {
    use base64::Engine;
    let encryption = &config.encryption;
    let mut keys = Vec::new();
    for (index, key) in encryption.keys.iter().enumerate() {
        let place = format!("encryption.keys[{index}] ({})", key.id);
        match key.key.resolve(env) {
            Ok(secret) => {
                let decoded =
                    base64::engine::general_purpose::STANDARD.decode(secret.expose_secret().trim());
                if decoded.map(|bytes| bytes.len()) != Ok(32) {
                    problems.push(format!(
                        "{place}.key: must be base64 of 32 random bytes (`openssl rand -base64 32`)"
                    ));
                }
                keys.push((key.id.clone(), secret));
            }
            Err(e) => problems.push(format!("{place}.key: {e}")),
        }
    }
    match keys
        .iter()
        .position(|(id, _)| *id == encryption.current_key_id)
    {
        Some(current) => keys.swap(0, current),
        None if encryption
            .keys
            .iter()
            .any(|k| k.id == encryption.current_key_id) => {}
        None => problems.push(format!(
            "encryption.current_key_id: no key with id '{}' in encryption.keys",
            encryption.current_key_id
        )),
    }
    keys
}
