use std::time::Duration;

use secrecy::ExposeSecret;

use super::*;

const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn example_env(dir: &std::path::Path) -> Vec<(String, String)> {
    let key_file = dir.join("encryption-key");
    std::fs::write(&key_file, format!("{KEY}\n")).expect("write key");
    let secret_file = dir.join("oa-secret");
    std::fs::write(&secret_file, "official-account-secret\n").expect("write secret");
    // The example serves gRPC with TLS; resolving only looks for the PEM blocks.
    let cert_file = dir.join("tls.crt");
    std::fs::write(
        &cert_file,
        "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
    )
    .expect("write cert");
    let key_file_tls = dir.join("tls.key");
    std::fs::write(
        &key_file_tls,
        "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n",
    )
    .expect("write tls key");
    env(&[
        (
            "WECHAT_IDENTITY__SERVER__TLS__CERT_FILE",
            cert_file.to_str().expect("utf-8 path"),
        ),
        (
            "WECHAT_IDENTITY__SERVER__TLS__KEY_FILE",
            key_file_tls.to_str().expect("utf-8 path"),
        ),
        ("DATABASE_URL", "postgres://app:pw@db/identity"),
        ("WX_MINI_PROGRAM_SECRET", "mini-secret"),
        (
            "OPS_CONSOLE_CALLER_KEY",
            "an-ops-console-key-of-32-characters!",
        ),
        (
            "WECHAT_IDENTITY__ENCRYPTION__KEYS__0__KEY__FILE",
            key_file.to_str().expect("utf-8 path"),
        ),
        (
            "WECHAT_IDENTITY__APPS__1__SECRET__FILE",
            secret_file.to_str().expect("utf-8 path"),
        ),
    ])
}

#[test]
fn the_example_config_resolves_with_its_secrets_from_env_and_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = example_env(dir.path());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let resolved = Config::load(Some(&path), &env)
        .expect("parses")
        .resolve(&env)
        .expect("valid");
    assert_eq!(resolved.apps.len(), 2);
    assert_eq!(
        resolved.apps[1].secret.expose_secret(),
        "official-account-secret"
    );
    assert_eq!(
        resolved.apps[1].allowed_return_to[0].host_str(),
        Some("shop.example.com")
    );
    assert_eq!(
        resolved.database_url.expose_secret(),
        "postgres://app:pw@db/identity"
    );
    assert_eq!(resolved.encryption_keys[0].0, "2026-11");
    assert_eq!(
        resolved.callers[0].permissions,
        [Permission::Core].into_iter().collect()
    );
    assert!(resolved.callers[1].permissions.contains(&Permission::Admin));
    assert_eq!(
        resolved.config.sessions.refresh_ttl,
        Duration::from_secs(30 * 86_400)
    );
}

#[test]
fn env_overrides_win_over_the_file() {
    let config = Config::parse(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = []\n[server]\nrequest_timeout = \"3s\"",
        &env(&[
            ("WECHAT_IDENTITY__SERVER__REQUEST_TIMEOUT", "250ms"),
            ("WECHAT_IDENTITY__SESSIONS__ACCESS_TTL", "15m"),
        ]),
    )
    .expect("parses");
    assert_eq!(config.server.request_timeout, Duration::from_millis(250));
    assert_eq!(config.sessions.access_ttl, Duration::from_secs(900));
}

#[test]
fn unknown_fields_are_refused_with_their_name() {
    let error = Config::parse(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = []\n[server]\ngrpc_port = 1",
        &[],
    )
    .expect_err("unknown field");
    assert!(error.to_string().contains("grpc_port"), "{error}");
    let error = Config::parse("", &env(&[("WECHAT_IDENTITY__SERVR__GRPC_LISTEN", "x")]))
        .expect_err("typo in env");
    assert!(error.to_string().contains("servr"), "{error}");
}

#[test]
fn every_problem_is_reported_at_once_without_secret_values() {
    let text = r#"
        [server]
        grpc_listen = "0.0.0.0:50051"
        [database]
        url = "mysql://nope"
        [encryption]
        current_key_id = "missing"
        keys = [{ id = "short", key = { value = "c2hvcnQ=" } }]
        [[apps]]
        app_id = "wx 1"
        kind = "mini_program"
        secret = { env = "NOPE" }
        [[apps]]
        app_id = "wx2"
        kind = "official_account"
        secret = { value = "s3cr3t-value" }
        [[apps]]
        app_id = "wx3"
        kind = "mini_program"
        secret = { env = "UNSET_SECRET" }
    "#;
    let error = Config::parse(text, &[])
        .expect("parses")
        .resolve(&[])
        .expect_err("invalid");
    let message = error.to_string();
    for expected in [
        "apps[0].app_id",
        "apps[1] (wx2).allowed_return_to",
        "UNSET_SECRET is not set",
        "database.url",
        "encryption.keys[0] (short).key",
        "encryption.current_key_id",
        "callers: none configured",
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in:\n{message}"
        );
    }
    assert!(!message.contains("s3cr3t-value"));
}

#[test]
fn without_callers_the_service_may_listen_on_loopback_only() {
    let base = format!(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = [{{ id = \"k\", key = {{ value = \"{KEY}\" }} }}]\n"
    );
    Config::parse(&base, &[])
        .expect("parses")
        .resolve(&[])
        .expect("loopback default is fine");
    let open = format!("{base}[server]\ngrpc_listen = \"0.0.0.0:50051\"\n");
    assert!(
        Config::parse(&open, &[])
            .expect("parses")
            .resolve(&[])
            .is_err()
    );
}

#[test]
fn grpc_off_loopback_without_tls_is_refused_unless_plaintext_is_allowed_on_purpose() {
    let base = format!(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = [{{ id = \"k\", key = {{ value = \"{KEY}\" }} }}]\n\
         [[callers]]\nname = \"svc\"\nkey_sha256 = \"{}\"\n",
        "ab".repeat(32)
    );
    let resolve = |server: &str| {
        Config::parse(&format!("{base}[server]\n{server}"), &[])
            .expect("parses")
            .resolve(&[])
    };
    let refused = resolve("grpc_listen = \"0.0.0.0:50051\"\n").expect_err("plaintext");
    let message = refused.to_string();
    assert!(
        message.contains("server.grpc_listen is 0.0.0.0:50051 without [server.tls]")
            && message.contains("server.allow_plaintext = true"),
        "says what to do: {message}"
    );
    let refused = resolve("grpc_listen = \"[::]:50051\"\nallow_plaintext = false\n");
    assert!(refused.is_err(), "IPv6 any-address too");
    let allowed = resolve("grpc_listen = \"0.0.0.0:50051\"\nallow_plaintext = true\n")
        .expect("allowed on purpose");
    assert!(allowed.config.server.allow_plaintext);
    resolve("grpc_listen = \"127.0.0.1:50051\"\n").expect("loopback needs no TLS");
    resolve("grpc_listen = \"[::1]:50051\"\n").expect("IPv6 loopback needs no TLS");
    assert_eq!(
        crate::config::plaintext_problem("10.0.0.7:50051".parse().expect("addr"), true, false),
        None,
        "TLS configured"
    );
}

#[test]
fn the_admin_listener_defaults_to_loopback_and_shares_no_port() {
    let base = format!(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = [{{ id = \"k\", key = {{ value = \"{KEY}\" }} }}]\n"
    );
    let resolved = Config::parse(&base, &[])
        .expect("parses")
        .resolve(&[])
        .expect("defaults");
    assert_eq!(
        resolved.config.server.admin_listen,
        "127.0.0.1:9464".parse().expect("addr")
    );
    let clash = Config::parse(
        &format!("{base}[server]\nadmin_listen = \"0.0.0.0:8080\"\n"),
        &[],
    )
    .expect("parses")
    .resolve(&[])
    .expect_err("same port as the shim");
    assert!(
        clash.to_string().contains("server.admin_listen: port 8080"),
        "{clash}"
    );
    Config::parse(
        &format!("{base}[server]\nadmin_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n"),
        &[],
    )
    .expect("parses")
    .resolve(&[])
    .expect("port 0 picks a free port each");
}

#[test]
fn caller_keys_are_kept_only_as_hashes() {
    let text = format!(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = [{{ id = \"k\", key = {{ value = \"{KEY}\" }} }}]\n\
         [[callers]]\nname = \"svc\"\nkey = {{ env = \"SVC_KEY\" }}\n"
    );
    let key = "0123456789abcdef0123456789abcdef-svc";
    let resolved = Config::parse(&text, &[])
        .expect("parses")
        .resolve(&env(&[("SVC_KEY", key)]))
        .expect("valid");
    let expected: [u8; 32] = sha2::Sha256::digest(key.as_bytes()).into();
    assert_eq!(resolved.callers[0].key_sha256, expected);
    assert!(!format!("{resolved:?}").contains(key));
    use sha2::Digest;
}

#[test]
fn tls_files_that_are_missing_or_not_pem_are_named_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = example_env(dir.path());
    let not_pem = dir.path().join("cert.txt");
    std::fs::write(&not_pem, "hello").expect("write");
    let missing = dir.path().join("nope.key");
    env.extend(super::tests::env(&[
        (
            "WECHAT_IDENTITY__SERVER__TLS__CERT_FILE",
            not_pem.to_str().expect("utf-8"),
        ),
        (
            "WECHAT_IDENTITY__SERVER__TLS__KEY_FILE",
            missing.to_str().expect("utf-8"),
        ),
    ]));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let error = Config::load(Some(&path), &env)
        .expect("parses")
        .resolve(&env)
        .expect_err("unusable TLS files");
    let text = error.to_string();
    assert!(
        text.contains("server.tls.cert_file") && text.contains("no PEM"),
        "{text}"
    );
    assert!(
        text.contains("server.tls.key_file") && text.contains("cannot read"),
        "{text}"
    );
}

#[test]
fn the_database_url_is_printed_without_an_inline_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = example_env(dir.path());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config.example.toml");
    let resolved = Config::load(Some(&path), &env)
        .expect("parses")
        .resolve(&env)
        .expect("valid");
    assert_eq!(resolved.database_for_display(), "from secret");

    let mut inline = env.clone();
    inline.retain(|(name, _)| name != "DATABASE_URL");
    let toml = std::fs::read_to_string(&path).expect("example").replace(
        r#"url_secret = { env = "DATABASE_URL" }"#,
        r#"url = "postgres://app:hunter2@db/identity""#,
    );
    let resolved = Config::parse(&toml, &inline)
        .expect("parses")
        .resolve(&inline)
        .expect("valid");
    let shown = resolved.database_for_display();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(shown, "postgres://app:***@db/identity");

    // sqlx also takes the password as a query parameter.
    let toml = toml.replace(
        "postgres://app:hunter2@db/identity",
        "postgres://app@db/identity?sslmode=require&password=hunter3",
    );
    let resolved = Config::parse(&toml, &inline)
        .expect("parses")
        .resolve(&inline)
        .expect("valid");
    let shown = resolved.database_for_display();
    assert!(!shown.contains("hunter3"), "{shown}");
    assert_eq!(
        shown,
        "postgres://app@db/identity?sslmode=require&password=***"
    );
}

/// A minimal valid config with `[sessions]` set to `sessions` (TOML lines).
fn with_sessions(sessions: &str) -> Result<ResolvedConfig, ConfigError> {
    let text = format!(
        "[encryption]\ncurrent_key_id = \"k\"\nkeys = [{{ id = \"k\", key = {{ value = \"{KEY}\" }} }}]\n\
         [sessions]\n{sessions}\n"
    );
    Config::parse(&text, &[]).expect("parses").resolve(&[])
}

#[test]
fn session_lifetimes_default_to_90_days_and_a_10_second_grace() {
    let resolved = with_sessions("").expect("valid");
    let sessions = &resolved.config.sessions;
    assert_eq!(sessions.max_lifetime, Duration::from_secs(90 * 86_400));
    assert_eq!(sessions.refresh_reuse_grace, Duration::from_secs(10));
    assert!(resolved.warnings.is_empty(), "{:?}", resolved.warnings);
}

#[test]
fn every_session_duration_takes_any_value_from_one_second() {
    let resolved = with_sessions(
        "access_ttl = \"1s\"\nrefresh_ttl = \"1s\"\nmax_lifetime = \"1s\"\nrefresh_reuse_grace = \"1s\"",
    )
    .expect("one second is short but allowed");
    assert_eq!(
        resolved.config.sessions.max_lifetime,
        Duration::from_secs(1)
    );
    let off = with_sessions("refresh_reuse_grace = \"0s\"").expect("no grace is allowed");
    assert!(off.config.sessions.refresh_reuse_grace.is_zero());
}

#[test]
fn a_zero_session_lifetime_is_refused_naming_the_field() {
    for field in ["access_ttl", "refresh_ttl", "max_lifetime"] {
        for value in ["0s", "500ms"] {
            let error =
                with_sessions(&format!("{field} = \"{value}\"")).expect_err("below a second");
            let text = error.to_string();
            assert!(text.contains(&format!("sessions.{field}")), "{text}");
        }
    }
    let error = with_sessions("refresh_reuse_grace = \"500ms\"").expect_err("half a second");
    assert!(
        error.to_string().contains("sessions.refresh_reuse_grace"),
        "{error}"
    );
}

#[test]
fn lifetimes_that_look_like_mistakes_are_warnings_not_errors() {
    let resolved = with_sessions(
        "access_ttl = \"1day\"\nrefresh_ttl = \"1h\"\nmax_lifetime = \"30min\"\nrefresh_reuse_grace = \"5min\"",
    )
    .expect("works, if oddly");
    let warnings = resolved.warnings.join("\n");
    for expected in [
        "sessions.access_ttl (1day) is not below refresh_ttl (1h)",
        "sessions.refresh_ttl (1h) is above max_lifetime (30m)",
        "sessions.refresh_reuse_grace (5m) is above 1 minute",
    ] {
        assert!(
            warnings.contains(expected),
            "missing {expected:?} in:\n{warnings}"
        );
    }
}
