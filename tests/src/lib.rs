//! Starts the real service, on port 0, against an in-process WeChat simulator,
//! with a fresh SQLite database per test, and hands out authenticated clients.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use secrecy::ExposeSecret;
use server::app::Application;
use server::config::Config;
use server::pb::identity_service_client::IdentityServiceClient;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wechat_sim::{RunningSim, SimConfig, Simulator};

/// The demo mini program with a unionid.
pub const MINI: &str = "wxd000000000000001";
/// The Official Account.
pub const OFFICIAL: &str = "wxd000000000000002";
/// A mini program without Open Platform binding.
pub const LONE_MINI: &str = "wxd000000000000004";
/// The key of the `core` caller.
pub const CORE_KEY: &str = "core-caller-key-000000000000000000000";
/// The key of the `admin` + `import` caller.
pub const ADMIN_KEY: &str = "admin-caller-key-00000000000000000000";

/// A client that sends a bearer key.
pub type Client = IdentityServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>`.
#[derive(Debug, Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl tonic::service::Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// A running service.
#[derive(Debug)]
pub struct TestApp {
    /// The simulator playing WeChat.
    pub sim: Simulator,
    /// Its listener.
    pub sim_running: RunningSim,
    /// gRPC address.
    pub grpc_addr: std::net::SocketAddr,
    /// HTTP shim address.
    pub http_addr: std::net::SocketAddr,
    channel: Channel,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
}

impl TestApp {
    /// A client with the `core` caller's key.
    pub fn client(&self) -> Client {
        self.client_with(Some(&format!("Bearer {CORE_KEY}")))
    }

    /// A client with the admin caller's key.
    pub fn admin(&self) -> Client {
        self.client_with(Some(&format!("Bearer {ADMIN_KEY}")))
    }

    /// A client sending `authorization` as given (or not at all).
    pub fn client_with(&self, authorization: Option<&str>) -> Client {
        let header = authorization.map(|value| value.parse().unwrap());
        IdentityServiceClient::with_interceptor(self.channel.clone(), Bearer(header))
    }

    /// The raw channel, for reflection and health clients.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Stops the service and waits for it to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Starts the service with two callers (core; admin+import) and the demo apps.
pub async fn spawn_app() -> TestApp {
    let sim = Simulator::new(SimConfig::demo());
    let sim_running = sim.spawn().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let key = server::app::generate_encryption_key();
    let toml = format!(
        r#"
        [server]
        grpc_listen = "127.0.0.1:0"
        http_listen = "127.0.0.1:0"
        [database]
        url = "sqlite://{db}"
        [encryption]
        current_key_id = "test"
        keys = [{{ id = "test", key = {{ value = "{key}" }} }}]
        [[apps]]
        app_id = "{MINI}"
        kind = "mini_program"
        secret = {{ value = "demo-mini-program-secret-0001" }}
        [[apps]]
        app_id = "{OFFICIAL}"
        kind = "official_account"
        secret = {{ value = "demo-official-account-secret-02" }}
        allowed_return_to = ["https://app.example/cb"]
        [[apps]]
        app_id = "{LONE_MINI}"
        kind = "mini_program"
        secret = {{ value = "demo-lone-mini-program-secret-4" }}
        [[callers]]
        name = "core-caller"
        key = {{ value = "{CORE_KEY}" }}
        [[callers]]
        name = "admin-caller"
        key = {{ value = "{ADMIN_KEY}" }}
        permissions = ["core", "import", "admin"]
        "#,
        db = data.path().join("test.db").display(),
        key = key.expose_secret(),
    );
    let resolved = Config::parse(&toml, &[]).unwrap().resolve(&[]).unwrap();
    let app = Application::build(resolved, Some(sim_running.base_url.clone()))
        .await
        .unwrap();
    let (grpc_addr, http_addr) = (app.grpc_addr(), app.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until_stopped(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestApp {
        sim,
        sim_running,
        grpc_addr,
        http_addr,
        channel,
        stop: Some(stop),
        task: Some(task),
        _data: data,
    }
}

/// The `ErrorInfo` reason of a status, if any.
pub fn reason(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status.get_details_error_info().map(|info| info.reason)
}

/// The field a `BadRequest` names, if any.
pub fn bad_field(status: &tonic::Status) -> Option<String> {
    use tonic_types::StatusExt;
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|v| v.field.clone()))
}
