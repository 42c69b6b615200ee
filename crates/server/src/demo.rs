//! The zero-config demo: SQLite under `./data/`, an encryption key generated
//! once and kept beside it, the WeChat simulator in-process with demo apps,
//! and a banner with commands that walk a newcomer through the service.

use std::net::SocketAddr;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};

use crate::config::{
    AppConfig, AppKind, Config, DatabaseConfig, EncryptionConfig, EncryptionKeyConfig,
    SecretSource, SimulatorConfig,
};

/// The demo's data folder.
pub(crate) const DATA_DIR: &str = "./data";
const KEY_FILE: &str = "encryption.key";

/// The demo configuration: apps are the simulator's demo apps.
///
/// # Errors
/// The data folder or key file could not be created or read.
pub(crate) fn config(data_dir: &Path) -> Result<Config, String> {
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
    let key_path = data_dir.join(KEY_FILE);
    if !key_path.exists() {
        let key = crate::app::generate_encryption_key();
        write_private(&key_path, key.expose_secret())?;
    }
    let app = |app_id: &str, kind, secret: &str, return_to: &[&str]| AppConfig {
        app_id: app_id.into(),
        kind,
        secret: SecretSource::Value(SecretString::from(secret)),
        allowed_return_to: return_to.iter().map(|s| (*s).to_owned()).collect(),
        mp_verify_token: None,
    };
    let return_to = ["http://127.0.0.1:8080/demo/"];
    Ok(Config {
        server: Default::default(),
        database: DatabaseConfig {
            url: format!("sqlite://{}", data_dir.join("wechat-identity.db").display()),
            ..Default::default()
        },
        redis: None,
        encryption: EncryptionConfig {
            current_key_id: "demo".into(),
            keys: vec![EncryptionKeyConfig {
                id: "demo".into(),
                key: SecretSource::File(key_path),
            }],
        },
        sessions: Default::default(),
        profiles: Default::default(),
        wechat: Default::default(),
        apps: vec![
            app(
                "wxd000000000000001",
                AppKind::MiniProgram,
                "demo-mini-program-secret-0001",
                &[],
            ),
            app(
                "wxd000000000000002",
                AppKind::OfficialAccount,
                "demo-official-account-secret-02",
                &return_to,
            ),
            app(
                "wxd000000000000003",
                AppKind::Website,
                "demo-website-secret-00000000003",
                &return_to,
            ),
            app(
                "wxd000000000000004",
                AppKind::MiniProgram,
                "demo-lone-mini-program-secret-4",
                &[],
            ),
        ],
        callers: Vec::new(),
        simulator: Some(SimulatorConfig::default()),
    })
}

fn write_private(path: &Path, content: &str) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(content.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The banner: what runs where, and commands to try.
pub(crate) fn banner(
    grpc: SocketAddr,
    http: SocketAddr,
    admin: SocketAddr,
    simulator: &str,
    open_mode: bool,
) -> String {
    let callers = if open_mode {
        "no caller keys (loopback only)"
    } else {
        "caller keys required: add -H 'authorization: Bearer <key>' to each grpcurl"
    };
    let mini = "wxd000000000000001";
    let oa = "wxd000000000000002";
    format!(
        r#"
wechat-identity with WeChat simulated at {simulator}; {callers}
  gRPC  {grpc}   (reflection on: grpcurl -plaintext {grpc} list)
  HTTP  http://{http}   (/healthz, /readyz, /.well-known/jwks.json)
  Admin http://{admin}   (/metrics; loopback only unless server.admin_listen says otherwise)

Try it (each code works once, for 5 minutes, like WeChat's; put the login's userId,
session.accessToken and session.refreshToken where <user_id>, <access_token> and <refresh_token> stand):
  grpcurl -plaintext {grpc} list
  CODE=$(curl -s '{simulator}/sim/login-code?app_id={mini}&user=alice' | sed 's/.*"code":"\([^"]*\)".*/\1/')
  grpcurl -plaintext -d "{{\"app_id\":\"{mini}\",\"code\":\"$CODE\"}}" {grpc} wechat.identity.v1.IdentityService/MiniProgramLogin

  PHONE=$(curl -s '{simulator}/sim/phone-code?app_id={mini}&user=alice' | sed 's/.*"code":"\([^"]*\)".*/\1/')
  grpcurl -plaintext -d "{{\"app_id\":\"{mini}\",\"code\":\"$PHONE\",\"user_id\":\"<user_id>\"}}" {grpc} wechat.identity.v1.IdentityService/GetPhoneNumber
  grpcurl -plaintext -d '{{"user_id":"<user_id>"}}' {grpc} wechat.identity.v1.IdentityService/GetProfile
  grpcurl -plaintext -d '{{"refresh_token":"<refresh_token>"}}' {grpc} wechat.identity.v1.IdentityService/RefreshToken
  grpcurl -plaintext -d '{{"access_token":"<access_token>"}}' {grpc} wechat.identity.v1.IdentityService/VerifyToken

Web login (Official Account or website app): open http://{http}/demo/ in a browser, or follow the redirects with curl:
  TICKET=$(curl -sL -b '' -o /dev/null -w '%{{url_effective}}' 'http://{http}/oauth/{oa}/authorize?return_to=http%3A%2F%2F{http}%2Fdemo%2F&scope=snsapi_userinfo' | sed 's/.*ticket=\([^&]*\).*/\1/')
  grpcurl -plaintext -d "{{\"ticket\":\"$TICKET\"}}" {grpc} wechat.identity.v1.IdentityService/WebLogin
"#
    )
}
