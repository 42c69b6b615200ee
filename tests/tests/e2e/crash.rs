//! A hard crash loses nothing acknowledged. The real binary, under 50
//! clients that log in and then rotate their refresh token over and over, is
//! killed with SIGKILL at a random moment, started again on the same
//! database and config, serves again within a second, and everything a
//! client heard back about is still there: the last refresh token each
//! client received still rotates (directly, or through the reuse grace when
//! a rotation it never heard back about committed before the kill), its
//! access token still verifies, every user a login answered with still
//! exists and still holds its openid, and no person has two users. Ten kill
//! points per backend; the seed that draws them is printed, and
//! `WECHAT_IDENTITY_CRASH_SEED=<seed>` replays them.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use e2e::binary::{Running, free_port};
use e2e::postgres::TestDatabase;
use e2e::{Backend, Bearer, CORE_KEY, Client, MINI, ServiceConfig, on_both_backends, reason};
use server::config::Permission;
use server::pb::get_profile_request::Lookup;
use server::pb::identity_service_client::IdentityServiceClient;
use server::pb::{
    GetProfileRequest, MiniProgramLoginRequest, RefreshTokenRequest, VerifyTokenRequest,
    WechatIdentity,
};
use sqlx::Connection as _;
use test_support::config::loopback;
use tonic::transport::Channel;
use wechat_sim::{SimConfig, Simulator};

/// Clients under load at each kill.
const CLIENTS: usize = 50;
/// The people they log in as: two clients per person, so that first logins
/// of one person race each other in the first round.
const PEOPLE: usize = 25;
/// Kill points per backend.
const ROUNDS: usize = 10;
/// When the kill comes, after the load starts: at least, and at most.
const KILL_AFTER_MS: (u64, u64) = (150, 900);
/// The restarted binary answers a call this soon after it is spawned.
const SERVES_AGAIN_WITHIN: Duration = Duration::from_secs(1);
/// The first start, on an empty database.
const START: Duration = Duration::from_secs(30);
/// The variable that replays a run's kill points.
const SEED_ENV: &str = "WECHAT_IDENTITY_CRASH_SEED";

/// The kill points, drawn by SplitMix64 from one seed that the test prints.
#[derive(Debug)]
struct KillPoints {
    state: u64,
}

impl KillPoints {
    /// From `WECHAT_IDENTITY_CRASH_SEED`, else from the clock.
    #[allow(clippy::disallowed_methods)] // the test's own replay switch, not the service's config
    fn seeded() -> (Self, u64) {
        let seed = std::env::var(SEED_ENV)
            .ok()
            .map(|seed| seed.parse().expect("the crash seed is a u64"))
            .unwrap_or_else(|| {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
                now.as_secs() ^ u64::from(now.subsec_nanos()).rotate_left(32)
            });
        (Self { state: seed }, seed)
    }

    fn next_delay(&mut self) -> Duration {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let (least, most) = KILL_AFTER_MS;
        Duration::from_millis(least + z % (most - least + 1))
    }
}

/// One database, one config file and one set of ports for every round: each
/// restart is the same deployment coming back.
#[derive(Debug)]
struct Deployment {
    dir: tempfile::TempDir,
    config: PathBuf,
    env: Vec<(String, String)>,
    grpc: u16,
    database_url: String,
    _postgres: Option<TestDatabase>,
}

impl Deployment {
    /// A fresh database on `backend`, the simulator at `wechat`, one `core`
    /// caller; `None` when that is a PostgreSQL absent outside CI.
    async fn new(backend: Backend, wechat: &str) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("identity.db").display()),
                None,
            ),
            Backend::Postgres => {
                let database = TestDatabase::create().await?;
                (database.url.clone(), Some(database))
            }
        };
        let (grpc, http, admin) = (free_port(), free_port(), free_port());
        let built = ServiceConfig::new(&database_url)
            .listening(loopback(grpc), loopback(http), loopback(admin))
            .wechat_at(wechat)
            .with_caller("crash", CORE_KEY, &[Permission::Core])
            .only_apps(&[MINI]);
        let config = built.write(dir.path());
        Some(Self {
            dir,
            config,
            env: built.env,
            grpc,
            database_url,
            _postgres: postgres,
        })
    }

    fn start(&self) -> Running {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        env.push(("RUST_LOG", "info"));
        Running::start(
            &["--config", self.config.to_str().unwrap(), "serve"],
            self.dir.path(),
            &env,
        )
    }

    async fn channel(&self) -> Result<Channel, tonic::transport::Error> {
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc))
            .unwrap()
            .connect()
            .await
    }
}

fn client(channel: Channel) -> Client {
    IdentityServiceClient::with_interceptor(channel, Bearer::new(&format!("Bearer {CORE_KEY}")))
}

/// What a client heard back about one session: its login, and the last
/// answer it got (the login's, or that of its last acknowledged refresh).
#[derive(Debug, Clone)]
struct Acknowledged {
    person: String,
    user_id: String,
    openid: String,
    session_id: String,
    access_token: String,
    refresh_token: String,
    /// Refreshes acknowledged under load.
    rotations: usize,
    /// The round of its login.
    round: usize,
}

/// One client's run: what it heard back, and a call that failed while the
/// server was still up (a bug; a failure after the kill is the crash's).
#[derive(Debug)]
struct Run {
    acknowledged: Option<Acknowledged>,
    failure: Option<String>,
}

/// A login as `person`, then refreshes with the latest refresh token, one
/// at a time, until `stop`, or until a call fails.
async fn client_run(
    mut client: Client,
    sim: Simulator,
    person: String,
    round: usize,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
) -> Run {
    let failed = |what: &str, status: tonic::Status, acknowledged: Option<Acknowledged>| Run {
        failure: (!killed.load(Ordering::SeqCst))
            .then(|| format!("{person}: {what} failed while the server was up: {status:?}")),
        acknowledged,
    };
    let login = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: sim.mint_login_code(MINI, &person),
        })
        .await;
    let login = match login {
        Ok(login) => login.into_inner(),
        Err(status) => return failed("MiniProgramLogin", status, None),
    };
    let session = login.session.unwrap();
    let mut acknowledged = Acknowledged {
        person: person.clone(),
        user_id: login.user_id,
        openid: login.openid,
        session_id: session.session_id,
        access_token: session.access_token,
        refresh_token: session.refresh_token,
        rotations: 0,
        round,
    };
    while !stop.load(Ordering::SeqCst) {
        let refreshed = client
            .refresh_token(RefreshTokenRequest {
                refresh_token: acknowledged.refresh_token.clone(),
            })
            .await;
        let session = match refreshed {
            Ok(refreshed) => refreshed.into_inner().session.unwrap(),
            Err(status) => return failed("RefreshToken", status, Some(acknowledged)),
        };
        if session.session_id != acknowledged.session_id {
            return Run {
                failure: Some(format!(
                    "{person}: a refresh of session {} answered session {}",
                    acknowledged.session_id, session.session_id
                )),
                acknowledged: Some(acknowledged),
            };
        }
        acknowledged.access_token = session.access_token;
        acknowledged.refresh_token = session.refresh_token;
        acknowledged.rotations += 1;
    }
    Run {
        acknowledged: Some(acknowledged),
        failure: None,
    }
}

/// Sends SIGKILL, as the OOM killer or a lost node would: no drain, no
/// destructor, nothing flushed by the process itself; and reaps it.
async fn kill_hard(server: &mut Running) {
    let pid = server.pid().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -9 {pid}");
    let status = server.exit(Duration::from_secs(10)).await;
    assert_eq!(
        status.signal(),
        Some(9),
        "died of the SIGKILL ({status}):\n{}",
        server.output()
    );
}

/// Polls the restarted binary until a gRPC call that reads the database
/// answers (GetProfile of a known user, else USER_NOT_FOUND of an unknown
/// one); the time from `spawned` to that answer, and a client on it.
async fn serving_again(
    deployment: &Deployment,
    server: &Running,
    spawned: Instant,
    known_user: Option<&str>,
) -> (Duration, Client) {
    let user_id = known_user.unwrap_or("00000000-0000-7000-8000-000000000000");
    loop {
        let attempt = async {
            let mut client = client(deployment.channel().await.ok()?);
            let answer = client
                .get_profile(GetProfileRequest {
                    lookup: Some(Lookup::UserId(user_id.to_owned())),
                    refresh_from_wechat: false,
                })
                .await;
            match answer {
                Ok(_) => Some(client),
                Err(status)
                    if known_user.is_none()
                        && reason(&status).as_deref() == Some("USER_NOT_FOUND") =>
                {
                    Some(client)
                }
                Err(_) => None,
            }
        };
        if let Ok(Some(client)) = tokio::time::timeout(Duration::from_secs(5), attempt).await {
            return (spawned.elapsed(), client);
        }
        assert!(
            spawned.elapsed() < Duration::from_secs(30),
            "the restarted binary does not serve after 30 s:\n{}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Each session's last acknowledged access token verifies as that session's,
/// and its last acknowledged refresh token rotates it, which a refresh
/// token the service rotated away and then lost would not (a retired token
/// outside the grace answers REFRESH_TOKEN_REUSED and revokes the session;
/// a token that never committed, REFRESH_TOKEN_INVALID). A client has at
/// most one call in flight, so at most one rotation it never heard back
/// about can have committed, and the reuse grace (10 s, the default) answers
/// the token before it: that is the lost-answer case the grace is for, not a
/// loss. Each session then holds the new pair, acknowledged in turn, for the
/// next rounds. Answers the losses.
async fn check_sessions(
    client: &Client,
    sessions: &mut [Acknowledged],
    killed_at: Instant,
) -> Vec<String> {
    let mut checks = tokio::task::JoinSet::new();
    for (index, session) in sessions.iter().enumerate() {
        let (mut client, session) = (client.clone(), session.clone());
        checks.spawn(async move {
            let describe = format!(
                "session {} of {} (user {}, logged in in round {}, {} refreshes acknowledged under load)",
                session.session_id,
                session.person,
                session.user_id,
                session.round,
                session.rotations
            );
            let verified = client
                .verify_token(VerifyTokenRequest {
                    access_token: session.access_token.clone(),
                })
                .await;
            match verified.map(tonic::Response::into_inner) {
                Ok(verified)
                    if verified.active
                        && verified.session_id == session.session_id
                        && verified.user_id == session.user_id => {}
                other => {
                    return (
                        index,
                        Err(format!(
                            "{describe}: VerifyToken of its last acknowledged access token: {other:?}"
                        )),
                    );
                }
            }
            let refreshed = client
                .refresh_token(RefreshTokenRequest {
                    refresh_token: session.refresh_token.clone(),
                })
                .await;
            match refreshed {
                Ok(refreshed) => {
                    let new = refreshed.into_inner().session.unwrap();
                    if new.session_id != session.session_id {
                        return (
                            index,
                            Err(format!("{describe}: refreshed into session {}", new.session_id)),
                        );
                    }
                    let mut session = session;
                    session.access_token = new.access_token;
                    session.refresh_token = new.refresh_token;
                    (index, Ok(session))
                }
                Err(status) => (
                    index,
                    Err(format!(
                        "{describe}: RefreshToken with its last acknowledged refresh token, {:?} after the kill: {:?} {:?} {}",
                        killed_at.elapsed(),
                        status.code(),
                        reason(&status),
                        status.message()
                    )),
                ),
            }
        });
    }
    let mut losses = Vec::new();
    while let Some(checked) = checks.join_next().await {
        match checked.unwrap() {
            (index, Ok(session)) => sessions[index] = session,
            (_, Err(loss)) => losses.push(loss),
        }
    }
    losses
}

/// Every user a login answered with still exists, and still holds the
/// openid it answered with. Answers the losses.
async fn check_users(client: &Client, users: &HashMap<String, String>) -> Vec<String> {
    let mut losses = Vec::new();
    for (openid, user_id) in users {
        let mut client = client.clone();
        let by_id = client
            .get_profile(GetProfileRequest {
                lookup: Some(Lookup::UserId(user_id.clone())),
                refresh_from_wechat: false,
            })
            .await
            .map(|response| response.into_inner().profile.unwrap().user_id);
        if by_id.as_ref().ok() != Some(user_id) {
            losses.push(format!("user {user_id} (openid {openid}): {by_id:?}"));
        }
        let by_identity = client
            .get_profile(GetProfileRequest {
                lookup: Some(Lookup::Identity(WechatIdentity {
                    app_id: MINI.into(),
                    openid: openid.clone(),
                })),
                refresh_from_wechat: false,
            })
            .await
            .map(|response| response.into_inner().profile.unwrap().user_id);
        if by_identity.as_ref().ok() != Some(user_id) {
            losses.push(format!(
                "openid {openid}, acknowledged as user {user_id}, is held by: {by_identity:?}"
            ));
        }
    }
    losses
}

/// What the database holds, counted as an operator would.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    users: i64,
    identities: i64,
    revoked_sessions: i64,
    grace_uses: i64,
}

async fn counts(database_url: &str) -> Counts {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(database_url).await.unwrap();
    let mut counts = Vec::new();
    for sql in [
        "SELECT COUNT(*) FROM users",
        "SELECT COUNT(*) FROM identities",
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
        "SELECT COUNT(*) FROM audit_events WHERE kind = 'refresh_grace'",
    ] {
        counts.push(
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&mut conn)
                .await
                .unwrap(),
        );
    }
    let counts = Counts {
        users: counts[0],
        identities: counts[1],
        revoked_sessions: counts[2],
        grace_uses: counts[3],
    };
    let _ = conn.close().await;
    counts
}

async fn nothing_acknowledged_is_lost_across_a_hard_crash(backend: Backend) {
    let began = Instant::now();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::new(SimConfig::demo());
    // In the test's process, not the binary's: WeChat outlives the crash.
    let wechat = sim.spawn().await.unwrap();
    let Some(deployment) = Deployment::new(backend, &wechat.base_url).await else {
        return;
    };
    let (mut kill_points, seed) = KillPoints::seeded();
    println!("crash test on {backend:?}: seed {seed} ({SEED_ENV}={seed} replays the kill points)");
    let mut server = deployment.start();
    server.wait_for("wechat-identity serving", START).await;

    // One database for all ten rounds rather than a fresh one each: every
    // round's clients log in as the same people again, so a user lost in any
    // crash shows up as a second user for that person; the sessions of
    // earlier rounds, and the rotations their checks acknowledged, are
    // checked again after every later crash; and each restart recovers a
    // database with more history behind it.
    let people: Vec<String> = (0..PEOPLE)
        .map(|person| format!("crash-{person}"))
        .collect();
    let mut users: HashMap<String, String> = HashMap::new();
    let mut sessions: Vec<Acknowledged> = Vec::new();
    let mut restarts = Vec::new();
    let (mut logins, mut rotations) = (0, 0);
    for round in 1..=ROUNDS {
        let delay = kill_points.next_delay();
        let load = client(deployment.channel().await.unwrap());
        let (stop, killed) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let mut clients = tokio::task::JoinSet::new();
        for index in 0..CLIENTS {
            clients.spawn(client_run(
                load.clone(),
                sim.clone(),
                people[index % PEOPLE].clone(),
                round,
                stop.clone(),
                killed.clone(),
            ));
        }
        tokio::time::sleep(delay).await;
        killed.store(true, Ordering::SeqCst);
        kill_hard(&mut server).await;
        let killed_at = Instant::now();
        stop.store(true, Ordering::SeqCst);

        let runs = tokio::time::timeout(Duration::from_secs(30), clients.join_all())
            .await
            .expect("every client stops once the server is gone");
        let failures: Vec<_> = runs.iter().filter_map(|run| run.failure.clone()).collect();
        assert!(
            failures.is_empty(),
            "round {round} (seed {seed}): calls failed before the kill:\n{}",
            failures.join("\n")
        );
        let (mut round_logins, mut round_rotations) = (0, 0);
        for acknowledged in runs.into_iter().filter_map(|run| run.acknowledged) {
            assert_eq!(acknowledged.openid, sim.openid(MINI, &acknowledged.person));
            let user = users
                .entry(acknowledged.openid.clone())
                .or_insert_with(|| acknowledged.user_id.clone());
            assert_eq!(
                *user, acknowledged.user_id,
                "round {round} (seed {seed}): {} logged in as a second user: a user acknowledged before was lost",
                acknowledged.person
            );
            round_logins += 1;
            round_rotations += acknowledged.rotations;
            sessions.push(acknowledged);
        }
        logins += round_logins;
        rotations += round_rotations;

        let spawned = Instant::now();
        server = deployment.start();
        let known_user = users.values().next().map(String::as_str);
        let (ready, checker) = serving_again(&deployment, &server, spawned, known_user).await;
        restarts.push(ready);
        assert!(
            ready < SERVES_AGAIN_WITHIN,
            "round {round} (seed {seed}): the restarted binary served after {ready:?}:\n{}",
            server.output()
        );

        let checking = Instant::now();
        let mut losses = check_sessions(&checker, &mut sessions, killed_at).await;
        losses.extend(check_users(&checker, &users).await);
        assert!(
            losses.is_empty(),
            "round {round} (seed {seed}, killed {delay:?} into the load): {} acknowledged facts lost:\n{}",
            losses.len(),
            losses.join("\n")
        );
        let counted = counts(&deployment.database_url).await;
        assert!(
            counted.users == counted.identities
                && counted.users <= i64::try_from(PEOPLE).unwrap()
                && counted.users >= i64::try_from(users.len()).unwrap()
                && counted.revoked_sessions == 0,
            "round {round} (seed {seed}): one user per person logged in, each with its one \
             identity, and no session revoked; {} people acknowledged, the database holds {counted:?}",
            users.len()
        );
        println!(
            "crash round {round}/{ROUNDS} on {backend:?}: SIGKILL {delay:?} into the load, \
             {round_logins} logins and {round_rotations} refreshes acknowledged; serving again \
             {ready:?} after the spawn; {} sessions and {} users checked in {:?}; {counted:?}",
            sessions.len(),
            users.len(),
            checking.elapsed()
        );
    }

    server.terminate();
    let status = server.exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}:\n{}", server.output());
    let grace_uses = counts(&deployment.database_url).await.grace_uses;
    println!(
        "crash test on {backend:?}: {ROUNDS} kills (seed {seed}), {logins} logins and {rotations} \
         refreshes acknowledged, none lost ({grace_uses} answered through the reuse grace); \
         serving again after {:?} at most ({restarts:?}); {:?} in all",
        restarts.iter().max().unwrap(),
        began.elapsed()
    );
}

on_both_backends!(nothing_acknowledged_is_lost_across_a_hard_crash);
