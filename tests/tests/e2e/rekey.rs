//! Key rotation to the end with the real binary: data written under key k1,
//! k2 made current with k1 retired, `rekey` (stopped once, then run to its
//! end), `check-config` saying k1 protects nothing, and the service serving
//! every kind of value with k1 gone from the config.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::binary::{Running, free_port, run};
use e2e::postgres::TestDatabase;
use e2e::web::{Browser, param, redirect_of};
use e2e::{ADMIN_KEY, Backend, MINI, OFFICIAL, RETURN_TO, ServiceConfig};
use server::config::{Permission, SimulatorConfig};
use server::pb::get_profile_request::Lookup;
use server::pb::identity_service_client::IdentityServiceClient;
use server::pb::{
    GetAppAccessTokenRequest, GetPhoneNumberRequest, GetProfileRequest, MiniProgramLoginRequest,
    VerifyTokenRequest, WebLoginRequest,
};
use test_support::config::loopback;

const START: Duration = Duration::from_secs(30);

type Client = IdentityServiceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, e2e::Bearer>,
>;

/// A config on `database_url` whose encryption keys come from the
/// environment: k1 only, until the env overrides below add k2. Answers the
/// environment its other secrets are read from.
fn write_config(
    dir: &Path,
    database_url: &str,
    grpc: u16,
    http: u16,
    sim: u16,
) -> Vec<(String, String)> {
    let mut built = ServiceConfig::new(database_url)
        .listening(loopback(grpc), loopback(http), loopback(free_port()))
        .with_caller(
            "ops",
            ADMIN_KEY,
            &[Permission::Core, Permission::Import, Permission::Admin],
        )
        .encrypting_with("k1", "KEY_K1")
        .only_apps(&[MINI, OFFICIAL]);
    let config = &mut built.config;
    config.server.shutdown_grace = Duration::from_secs(3);
    config.simulator = Some(SimulatorConfig {
        listen: loopback(sim),
        latency: Duration::ZERO,
    });
    built.write(dir);
    built
        .env
        .into_iter()
        .filter(|(name, _)| !name.contains("ENCRYPTION_KEY"))
        .collect()
}

async fn client(grpc: u16) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    IdentityServiceClient::with_interceptor(
        channel,
        e2e::Bearer::new(&format!("Bearer {ADMIN_KEY}")),
    )
}

async fn sim_code(sim: u16, kind: &str) -> String {
    let url = format!("http://127.0.0.1:{sim}/sim/{kind}?app_id={MINI}&user=rita");
    let body: serde_json::Value = e2e::web::browser()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["code"].as_str().unwrap().to_owned()
}

/// The count `check-config` prints for key `id`.
fn protected_by(output: &str, id: &str) -> Option<u64> {
    let line = output
        .lines()
        .find(|line| line.starts_with(&format!("encryption key \"{id}\"")))?;
    if line.contains("protects no value") {
        return Some(0);
    }
    line.split("protects ")
        .nth(1)?
        .split(' ')
        .next()?
        .parse()
        .ok()
}

async fn rekey_moves_everything_to_the_new_key_and_the_old_key_can_leave_the_config(
    backend: Backend,
) {
    let dir = tempfile::tempdir().unwrap();
    let (database_url, _postgres) = match backend {
        Backend::Sqlite => (
            format!("sqlite://{}", dir.path().join("identity.db").display()),
            None,
        ),
        Backend::Postgres => match TestDatabase::create().await {
            Some(database) => (database.url.clone(), Some(database)),
            None => return,
        },
    };
    let (grpc, http, sim) = (free_port(), free_port(), free_port());
    let secrets = write_config(dir.path(), &database_url, grpc, http, sim);
    let config = dir.path().join("config.toml");
    let config = config.to_str().unwrap();
    let (k1, k2) = (e2e::encryption_key(), e2e::encryption_key());
    let secrets: Vec<(&str, &str)> = secrets
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let mut only_k1 = vec![("KEY_K1", k1.as_str()), ("RUST_LOG", "info")];
    only_k1.extend(secrets.iter().copied());
    let mut rotated = only_k1.clone();
    rotated.extend([
        ("KEY_K2", k2.as_str()),
        ("WECHAT_IDENTITY__ENCRYPTION__CURRENT_KEY_ID", "k2"),
        ("WECHAT_IDENTITY__ENCRYPTION__KEYS__1__ID", "k2"),
        ("WECHAT_IDENTITY__ENCRYPTION__KEYS__1__KEY__ENV", "KEY_K2"),
    ]);
    let mut only_k2 = vec![
        ("KEY_K2", k2.as_str()),
        ("RUST_LOG", "info"),
        ("WECHAT_IDENTITY__ENCRYPTION__CURRENT_KEY_ID", "k2"),
        ("WECHAT_IDENTITY__ENCRYPTION__KEYS__0__ID", "k2"),
        ("WECHAT_IDENTITY__ENCRYPTION__KEYS__0__KEY__ENV", "KEY_K2"),
    ];
    only_k2.extend(secrets.iter().copied());

    let (status, output) = run(&["--config", config, "check-config"], dir.path(), &only_k1).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("no database yet"),
        "nothing is created by a check: {output}"
    );

    // Every kind of value, under k1: session key, phone, app token, web
    // tokens, the generated signing key, the lookup key.
    let mut server = Running::start(&["--config", config, "serve"], dir.path(), &only_k1);
    server.wait_for("wechat-identity serving", START).await;
    let mut calls = client(grpc).await;
    let login = calls
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: sim_code(sim, "login-code").await,
        })
        .await
        .unwrap()
        .into_inner();
    let phone = calls
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: sim_code(sim, "phone-code").await,
            user_id: login.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let app_token = calls
        .get_app_access_token(GetAppAccessTokenRequest {
            app_id: MINI.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    let return_to: String = url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect();
    let browser = Browser::new();
    let wechat = redirect_of(
        &browser,
        &format!(
            "http://127.0.0.1:{http}/oauth/{OFFICIAL}/authorize?return_to={return_to}&scope=snsapi_userinfo"
        ),
    )
    .await;
    let callback = redirect_of(&browser, wechat.as_str()).await;
    let landed = redirect_of(&browser, callback.as_str()).await;
    let web = calls
        .web_login(WebLoginRequest {
            ticket: param(&landed, "ticket").unwrap(),
        })
        .await
        .unwrap()
        .into_inner();
    server.terminate();
    assert!(server.exit(Duration::from_secs(10)).await.success());

    let (status, output) = run(&["--config", config, "check-config"], dir.path(), &rotated).await;
    assert!(status.success(), "{output}");
    let before = protected_by(&output, "k1").unwrap_or_else(|| panic!("{output}"));
    assert!(before >= 7, "every kind counted: {output}");
    assert_eq!(protected_by(&output, "k2"), Some(0), "{output}");
    assert!(output.contains("run `wechat-identity rekey` before removing it"));

    // Stopped after two batches, then run again to its end.
    let (status, output) = run(
        &[
            "--config",
            config,
            "rekey",
            "--batch-size",
            "1",
            "--max-batches",
            "2",
        ],
        dir.path(),
        &rotated,
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("rekey stopped after --max-batches"),
        "{output}"
    );
    assert!(
        output.contains("rekey: key_material.ciphertext: batch 2"),
        "{output}"
    );
    let (_, midway) = run(&["--config", config, "check-config"], dir.path(), &rotated).await;
    let left = protected_by(&midway, "k1").unwrap();
    assert!(left < before, "{midway}");
    let (status, output) = run(
        &["--config", config, "rekey", "--batch-size", "2"],
        dir.path(),
        &rotated,
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains(&format!(
            "rekey done: {left} value(s) re-encrypted under key \"k2\""
        )),
        "only what was left: {output}"
    );
    assert!(
        output.contains("rekey: users.phone_ciphertext: batch 1"),
        "{output}"
    );
    assert!(
        !output.contains(&k1) && !output.contains(&k2),
        "no key printed"
    );
    let (status, output) = run(&["--config", config, "check-config"], dir.path(), &rotated).await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("encryption key \"k1\" (retired): protects no value; it may be removed"),
        "{output}"
    );
    assert_eq!(protected_by(&output, "k2"), Some(before));

    // k1 leaves the config: the service starts and reads every kind back.
    let (status, output) = run(&["--config", config, "check-config"], dir.path(), &only_k2).await;
    assert!(status.success(), "{output}");
    let mut server = Running::start(&["--config", config, "serve"], dir.path(), &only_k2);
    server.wait_for("wechat-identity serving", START).await;
    let mut calls = client(grpc).await;
    let profile = calls
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(login.user_id.clone())),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        profile.phone.unwrap().pure_phone_number,
        phone.pure_phone_number
    );
    let verified = calls
        .verify_token(VerifyTokenRequest {
            access_token: login.session.unwrap().access_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.active, "signed by the stored signing key");
    let cached = calls
        .get_app_access_token(GetAppAccessTokenRequest {
            app_id: MINI.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;
    assert_eq!(cached, app_token, "the stored app token, not a new fetch");
    // The web refresh token decrypts; the restarted simulator no longer
    // knows it, which is WeChat's answer, not ours.
    let refreshed = calls
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(web.user_id.clone())),
            refresh_from_wechat: true,
        })
        .await;
    if let Err(status) = refreshed {
        assert_eq!(
            e2e::reason(&status).as_deref(),
            Some("WEB_AUTHORIZATION_EXPIRED"),
            "{status:?}"
        );
    }
    server.terminate();
    assert!(server.exit(Duration::from_secs(10)).await.success());

    // A value under a key the config lacks is a problem check-config names.
    let mut k1_again = vec![("KEY_K1", k1.as_str()), ("RUST_LOG", "info")];
    k1_again.extend(secrets.iter().copied());
    let (status, output) = run(&["--config", config, "check-config"], dir.path(), &k1_again).await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("are under key id \"k2\", which is not in encryption.keys"),
        "{output}"
    );
}

e2e::on_both_backends!(rekey_moves_everything_to_the_new_key_and_the_old_key_can_leave_the_config);
