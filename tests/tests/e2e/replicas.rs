//! Several replicas, one owner of each token: three `wechat-identity`
//! processes on one PostgreSQL, one simulated WeChat. On a cold cache a few
//! hundred concurrent GetPhoneNumber calls spread over the three cost one
//! token fetch; after WeChat invalidates the token, exactly one refresh. A
//! browser whose callback lands on another replica than its authorize request
//! still logs in. A revocation or a profile change through one replica reaches
//! the others' caches within their propagation bound.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use e2e::binary::{Running, free_port};
use e2e::postgres::TestDatabase;
use e2e::web::{Browser, param, redirect_of};
use e2e::{ADMIN_KEY, Bearer, MINI, OFFICIAL, RETURN_TO, ServiceConfig};
use server::config::{Permission, RedisConfig};
use server::pb::identity_service_client::IdentityServiceClient;
use server::pb::{GetPhoneNumberRequest, WebLoginRequest};
use test_support::config::loopback;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wechat_sim::{Endpoint, SimConfig, Simulator};

const REPLICAS: usize = 3;
/// The test Redis (CI starts it on loopback).
const REDIS: &str = "redis://127.0.0.1:6379";

type Client = IdentityServiceClient<InterceptedService<Channel, Bearer>>;

/// One replica: its process and where it listens.
struct Replica {
    process: Running,
    grpc: u16,
    http: u16,
}

/// Starts `REPLICAS` processes at once on `database`, all pointed at `wechat`.
async fn start_replicas(
    database: &TestDatabase,
    wechat: &str,
    redis_prefix: Option<&str>,
    dir: &std::path::Path,
) -> Vec<Replica> {
    // One key for all: ServiceConfig::new makes a fresh one per config.
    let shared = ServiceConfig::new(&database.url);
    let mut replicas = Vec::new();
    for index in 0..REPLICAS {
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let mut built = ServiceConfig::new(&database.url)
            .listening(loopback(grpc), loopback(http), loopback(admin))
            .wechat_at(wechat)
            .with_caller("ops", ADMIN_KEY, &[Permission::Core, Permission::Admin])
            .only_apps(&[MINI, OFFICIAL]);
        built.config.encryption = shared.config.encryption.clone();
        built.env.extend(shared.env.iter().cloned());
        if let Some(prefix) = redis_prefix {
            built.config.redis = Some(RedisConfig {
                url: Some(REDIS.into()),
                url_secret: None,
                key_prefix: prefix.into(),
            });
        }
        let path = dir.join(format!("replica-{index}.toml"));
        std::fs::write(&path, built.to_toml()).unwrap();
        let mut env = built.env_pairs();
        env.push(("RUST_LOG", "info"));
        let process = Running::start(&["--config", path.to_str().unwrap()], dir, &env);
        replicas.push(Replica {
            process,
            grpc,
            http,
        });
    }
    for replica in &mut replicas {
        replica
            .process
            .wait_for("wechat-identity serving", Duration::from_secs(30))
            .await;
    }
    replicas
}

async fn client(replica: &Replica) -> Client {
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", replica.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
    IdentityServiceClient::with_interceptor(channel, Bearer::new(&format!("Bearer {ADMIN_KEY}")))
}

/// `calls` concurrent GetPhoneNumber calls, round robin over the replicas.
async fn phone_numbers(sim: &Simulator, clients: &[Client], calls: usize, round: &str) {
    let mut running = tokio::task::JoinSet::new();
    for index in 0..calls {
        let mut client = clients[index % clients.len()].clone();
        let code = sim.mint_phone_code(MINI, &format!("{round}-{index}"));
        running.spawn(async move {
            client
                .get_phone_number(GetPhoneNumberRequest {
                    app_id: MINI.into(),
                    code,
                    user_id: String::new(),
                })
                .await
        });
    }
    let mut failures = Vec::new();
    while let Some(done) = running.join_next().await {
        if let Err(status) = done.unwrap() {
            failures.push(status);
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed, first: {:?}",
        failures.len(),
        failures.first()
    );
}

/// Whether the test Redis answers; outside CI a test without it skips.
async fn redis_is_up() -> bool {
    let connected = async {
        redis::Client::open(REDIS)
            .ok()?
            .get_multiplexed_async_connection()
            .await
            .ok()
    };
    if tokio::time::timeout(Duration::from_secs(3), connected)
        .await
        .ok()
        .flatten()
        .is_some()
    {
        return true;
    }
    assert!(
        !e2e::in_ci(),
        "the Redis replica test needs Redis at {REDIS}"
    );
    eprintln!("skipping the Redis replica test: no Redis at {REDIS}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_fetch_each_token_once_and_refresh_it_once() {
    replicas_share_tokens_states_and_keys(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_with_redis_fetch_each_token_once_and_refresh_it_once() {
    if !redis_is_up().await {
        return;
    }
    let prefix = format!("wi-e2e-{}", uuid::Uuid::now_v7().simple());
    if !replicas_share_tokens_states_and_keys(Some(&prefix)).await {
        return;
    }
    let mut redis = redis::Client::open(REDIS)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("{prefix}:app-token:{MINI}");
    let kept: bool = redis::AsyncCommands::exists(&mut redis, &key)
        .await
        .unwrap();
    assert!(kept, "the token lives in Redis");
    let _: () = redis::AsyncCommands::del(&mut redis, &key).await.unwrap();
}

/// `false` when PostgreSQL is absent outside CI (the test skipped).
async fn replicas_share_tokens_states_and_keys(redis_prefix: Option<&str>) -> bool {
    let Some(database) = TestDatabase::create().await else {
        return false;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::new(SimConfig::demo());
    let wechat = sim.spawn().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut replicas = start_replicas(&database, &wechat.base_url, redis_prefix, dir.path()).await;
    let mut clients = Vec::new();
    for replica in &replicas {
        clients.push(client(replica).await);
    }

    phone_numbers(&sim, &clients, 300, "cold").await;
    assert_eq!(
        sim.calls(Endpoint::StableToken),
        1,
        "one token fetch for 300 calls over {REPLICAS} replicas on a cold cache"
    );
    assert_eq!(sim.calls(Endpoint::GetUserPhoneNumber), 300);

    sim.invalidate_access_tokens(MINI);
    phone_numbers(&sim, &clients, 150, "invalidated").await;
    assert_eq!(
        sim.calls(Endpoint::StableToken),
        2,
        "a token WeChat rejected is renewed once, by one replica"
    );

    // The browser's authorize request reaches replica 0, WeChat's callback replica 1.
    let return_to: String = url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect();
    let browser = Browser::new();
    let wechat_page = redirect_of(
        &browser,
        &format!(
        "http://127.0.0.1:{}/oauth/{OFFICIAL}/authorize?return_to={return_to}&scope=snsapi_userinfo",
            replicas[0].http
        ),
    )
    .await;
    let callback = redirect_of(&browser, wechat_page.as_str()).await;
    let mut on_replica_1 = callback.clone();
    on_replica_1.set_port(Some(replicas[1].http)).unwrap();
    let landed = redirect_of(&browser, on_replica_1.as_str()).await;
    let ticket = param(&landed, "ticket").unwrap_or_else(|| panic!("no ticket: {landed}"));
    let login = clients[2]
        .web_login(WebLoginRequest { ticket })
        .await
        .unwrap()
        .into_inner();
    // A JWT signed by one replica verifies on another: the keys are shared.
    let session = login.session.unwrap();
    let verify = |client: &Client| {
        let mut client = client.clone();
        let access_token = session.access_token.clone();
        async move {
            client
                .verify_token(server::pb::VerifyTokenRequest { access_token })
                .await
                .unwrap()
                .into_inner()
                .active
        }
    };
    for client in &clients {
        assert!(
            verify(client).await,
            "verifies on every replica (and is cached there)"
        );
    }

    // Logged out through replica 2: at once there, within
    // sessions.revocation_propagation (1 s by default) on the others.
    clients[2]
        .clone()
        .revoke_session(server::pb::RevokeSessionRequest {
            target: Some(server::pb::revoke_session_request::Target::SessionId(
                session.session_id.clone(),
            )),
        })
        .await
        .unwrap();
    assert!(
        !verify(&clients[2]).await,
        "the revoking replica knows at once"
    );
    let revoked = std::time::Instant::now();
    for client in &clients[..2] {
        while verify(client).await {
            assert!(
                revoked.elapsed() < Duration::from_secs(15),
                "a revoked session still verifies on another replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // A profile read on every replica (and kept there), then changed through
    // replica 2: at once there, within profiles.cache_propagation (1 s by
    // default) on the others.
    let profile_phone = |client: &Client| {
        let mut client = client.clone();
        let user_id = login.user_id.clone();
        async move {
            client
                .get_profile(server::pb::GetProfileRequest {
                    lookup: Some(server::pb::get_profile_request::Lookup::UserId(user_id)),
                    refresh_from_wechat: false,
                })
                .await
                .unwrap()
                .into_inner()
                .profile
                .unwrap()
                .phone
                .map(|phone| phone.pure_phone_number)
        }
    };
    for client in &clients {
        for _ in 0..2 {
            assert_eq!(profile_phone(client).await, None);
        }
    }
    clients[2]
        .clone()
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: sim.mint_phone_code(MINI, "profile-change"),
            user_id: login.user_id.clone(),
        })
        .await
        .unwrap();
    let saved = profile_phone(&clients[2]).await;
    assert!(
        saved.is_some(),
        "the changing replica answers the change at once"
    );
    let changed = std::time::Instant::now();
    for client in &clients[..2] {
        while profile_phone(client).await != saved {
            assert!(
                changed.elapsed() < Duration::from_secs(15),
                "a changed profile is still answered unchanged by another replica"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    for replica in &mut replicas {
        replica.process.terminate();
    }
    for replica in &mut replicas {
        let status = replica.process.exit(Duration::from_secs(30)).await;
        assert!(status.success(), "{}", replica.process.output());
    }
    true
}
