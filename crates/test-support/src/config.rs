//! The service's config for a test or a benchmark, built from the server's
//! own types: a renamed or retyped field breaks the build, not a test at run
//! time. Every secret is an `{ env = … }` reference into [`ServiceConfig::env`],
//! never inline, so the same value serves the service in-process
//! ([`ServiceConfig::resolve`]) and a spawned binary ([`ServiceConfig::write`]
//! plus the environment).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use secrecy::ExposeSecret as _;
use server::config::{
    AppConfig, AppKind, CallerConfig, Config, DatabaseConfig, EncryptionConfig,
    EncryptionKeyConfig, Permission, ProfileConfig, ResolvedConfig, SecretSource, ServerConfig,
    SessionConfig, WeChatConfig,
};

/// The demo mini program, bound to the Open Platform (its users have unionids).
pub const MINI: &str = "wxd000000000000001";
/// The demo Official Account.
pub const OFFICIAL: &str = "wxd000000000000002";
/// The demo website app (QR login).
pub const WEBSITE: &str = "wxd000000000000003";
/// A demo mini program without Open Platform binding.
pub const LONE_MINI: &str = "wxd000000000000004";
/// The `return_to` the web apps allow.
pub const RETURN_TO: &str = "https://app.example/cb";
/// The Official Account's `MP_verify_` token.
pub const MP_VERIFY_TOKEN: &str = "Xy12Ab34Cd56Ef78";

/// A config and the environment its secrets are read from.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The config, to adjust field by field.
    pub config: Config,
    /// `(variable, value)` for every secret the config names.
    pub env: Vec<(String, String)>,
}

impl ServiceConfig {
    /// The service on `database_url` (`sqlite://…` or `postgres://…`) with a
    /// fresh encryption key, the four demo apps (their secrets as the
    /// simulator's demo expects), no caller (open on loopback), listening on
    /// port 0 everywhere, its shim's public base on loopback.
    pub fn new(database_url: &str) -> Self {
        let mut this = Self {
            config: Config {
                server: ServerConfig {
                    grpc_listen: loopback(0),
                    http_listen: loopback(0),
                    admin_listen: loopback(0),
                    ..ServerConfig::default()
                },
                database: DatabaseConfig {
                    url: database_url.to_owned(),
                    ..DatabaseConfig::default()
                },
                redis: None,
                encryption: EncryptionConfig {
                    current_key_id: "test".into(),
                    keys: Vec::new(),
                },
                sessions: SessionConfig::default(),
                profiles: ProfileConfig::default(),
                wechat: WeChatConfig::default(),
                apps: Vec::new(),
                callers: Vec::new(),
                simulator: None,
            },
            env: Vec::new(),
        };
        let key = server::app::generate_encryption_key();
        let key = this.secret("ENCRYPTION_KEY_TEST", key.expose_secret());
        this.config.encryption.keys.push(EncryptionKeyConfig {
            id: "test".into(),
            key,
        });
        for (app_id, kind, secret) in [
            (MINI, AppKind::MiniProgram, "demo-mini-program-secret-0001"),
            (
                OFFICIAL,
                AppKind::OfficialAccount,
                "demo-official-account-secret-02",
            ),
            (WEBSITE, AppKind::Website, "demo-website-secret-00000000003"),
            (
                LONE_MINI,
                AppKind::MiniProgram,
                "demo-lone-mini-program-secret-4",
            ),
        ] {
            let secret = this.secret(&format!("APP_SECRET_{app_id}"), secret);
            let web = kind != AppKind::MiniProgram;
            this.config.apps.push(AppConfig {
                app_id: app_id.into(),
                kind,
                secret,
                allowed_return_to: if web {
                    vec![RETURN_TO.into()]
                } else {
                    Vec::new()
                },
                mp_verify_token: (app_id == OFFICIAL).then(|| MP_VERIFY_TOKEN.into()),
            });
        }
        this
    }

    /// Puts `value` in the environment as `variable` and answers the source
    /// that names it.
    pub fn secret(&mut self, variable: &str, value: &str) -> SecretSource {
        let variable = format!("WI_TEST_{}", variable.to_ascii_uppercase());
        self.env.retain(|(name, _)| *name != variable);
        self.env.push((variable.clone(), value.to_owned()));
        SecretSource::Env(variable)
    }

    /// Adds a caller named `name` holding `permissions`, with `key`.
    #[must_use]
    pub fn with_caller(mut self, name: &str, key: &str, permissions: &[Permission]) -> Self {
        let key = self.secret(
            &format!("CALLER_KEY_{}", name.replace(['-', '.'], "_")),
            key,
        );
        self.config.callers.push(CallerConfig {
            name: name.into(),
            key: Some(key),
            key_sha256: None,
            permissions: permissions.to_vec(),
        });
        self
    }

    /// Listens on these addresses, the shim's public base following `http`.
    #[must_use]
    pub fn listening(mut self, grpc: SocketAddr, http: SocketAddr, admin: SocketAddr) -> Self {
        self.config.server.grpc_listen = grpc;
        self.config.server.http_listen = http;
        self.config.server.admin_listen = admin;
        self.config.server.public_base_url = format!("http://{http}");
        self
    }

    /// Sends every WeChat call to `base` (the simulator), with no failover.
    #[must_use]
    pub fn wechat_at(mut self, base: &str) -> Self {
        self.config.wechat.api_base = base.to_owned();
        self.config.wechat.api_fallback = String::new();
        self.config.wechat.open_base = base.to_owned();
        self
    }

    /// Keeps only the apps named (of the four demo apps).
    #[must_use]
    pub fn only_apps(mut self, app_ids: &[&str]) -> Self {
        self.config
            .apps
            .retain(|app| app_ids.contains(&app.app_id.as_str()));
        self
    }

    /// Encrypts with one key, `id`, read from `variable`, which the test
    /// sets itself (as an operator would, or to change keys between runs).
    #[must_use]
    pub fn encrypting_with(mut self, id: &str, variable: &str) -> Self {
        for key in &self.config.encryption.keys {
            if let SecretSource::Env(replaced) = &key.key {
                self.env.retain(|(name, _)| name != replaced);
            }
        }
        self.config.encryption = EncryptionConfig {
            current_key_id: id.into(),
            keys: vec![EncryptionKeyConfig {
                id: id.into(),
                key: SecretSource::Env(variable.into()),
            }],
        };
        self
    }

    /// Every web app also allows these `return_to` prefixes.
    #[must_use]
    pub fn allowing_return_to(mut self, prefixes: &[String]) -> Self {
        for app in &mut self.config.apps {
            if app.kind != AppKind::MiniProgram {
                app.allowed_return_to.extend(prefixes.iter().cloned());
            }
        }
        self
    }

    /// The config checked and its secrets read, as the service starts from it.
    ///
    /// # Panics
    /// When the config is invalid: a test built it wrong.
    pub fn resolve(&self) -> ResolvedConfig {
        self.config
            .clone()
            .resolve(&self.env)
            .unwrap_or_else(|error| panic!("the test's config is invalid: {error}"))
    }

    /// The config as the TOML file the binary reads.
    ///
    /// # Panics
    /// When it does not serialise (an inline secret: use [`ServiceConfig::secret`]).
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.config).unwrap_or_else(|error| panic!("config to TOML: {error}"))
    }

    /// Writes the config to `dir/config.toml` and answers the path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.toml");
        std::fs::write(&path, self.to_toml()).unwrap();
        path
    }

    /// The environment as `(&str, &str)` pairs, for [`crate::process::Running::start`].
    pub fn env_pairs(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect()
    }
}

/// `127.0.0.1:port`.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A permission by its config name (`core`, `import`, `admin`).
///
/// # Panics
/// For any other name.
pub fn permission(name: &str) -> Permission {
    match name {
        "core" => Permission::Core,
        "import" => Permission::Import,
        "admin" => Permission::Admin,
        other => panic!("no permission named {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_config_round_trips_through_the_file_the_binary_reads() {
        let built = ServiceConfig::new("sqlite://./x.db")
            .with_caller(
                "orders",
                "orders-caller-key-0000000000000000000",
                &[Permission::Core],
            )
            .listening(loopback(50051), loopback(8080), loopback(9464));
        let text = built.to_toml();
        assert!(
            !text.contains("orders-caller-key"),
            "no secret inline:\n{text}"
        );
        let parsed = Config::parse(&text, &[]).expect("the binary reads it");
        let resolved = parsed.resolve(&built.env).expect("and resolves it");
        assert_eq!(resolved.apps.len(), 4);
        assert_eq!(resolved.callers.len(), 1);
        assert_eq!(resolved.config.server.admin_listen, loopback(9464));
    }

    #[test]
    fn an_inline_secret_is_never_written_out() {
        let mut built = ServiceConfig::new("sqlite://./x.db");
        built.config.sessions.signing_key = Some(SecretSource::Value("pem".to_owned().into()));
        assert!(toml::to_string(&built.config).is_err());
    }
}
