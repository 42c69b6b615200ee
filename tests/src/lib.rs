//! Starts the real service, on port 0, against an in-process WeChat simulator,
//! with a fresh database per test (a SQLite file, or a new PostgreSQL
//! database), and hands out authenticated gRPC clients and a browser-like
//! HTTP client that does not follow redirects.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod binary;
pub mod callers;
pub mod postgres;
pub mod web;

use std::path::PathBuf;
use std::sync::Arc;

use secrecy::ExposeSecret;
use server::app::{Application, Listeners};
use server::config::{Permission, TlsConfig};
use server::pb::identity_service_client::IdentityServiceClient;
use tokio::net::TcpListener;
use tonic::metadata::AsciiMetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use wechat_sim::{RunningSim, SimConfig, Simulator};

pub use test_support::config::{
    LONE_MINI, MINI, MP_VERIFY_TOKEN, OFFICIAL, RETURN_TO, ServiceConfig, WEBSITE,
};
pub use test_support::in_ci;

/// The key of the `core` caller.
pub const CORE_KEY: &str = "core-caller-key-000000000000000000000";
/// The key of the `admin` + `import` caller.
pub const ADMIN_KEY: &str = "admin-caller-key-00000000000000000000";

/// The database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temp folder: the embedded default.
    Sqlite,
    /// A fresh database on the local PostgreSQL, dropped afterwards.
    Postgres,
}

/// A change a test makes to the service's config, on its typed fields.
pub type Configure = Arc<dyn Fn(&mut ServiceConfig) + Send + Sync>;

/// How to start the service for a test.
#[derive(Clone)]
pub struct Options {
    /// The database.
    pub backend: Backend,
    /// Extra `return_to` prefixes for the web apps, beside [`RETURN_TO`].
    pub allowed_return_to: Vec<String>,
    /// TLS on the gRPC listener: PEM files (cert, key, client CA for mutual TLS).
    pub tls: Option<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// Changes to the config, applied in order.
    pub configure: Vec<Configure>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("backend", &self.backend)
            .field("allowed_return_to", &self.allowed_return_to)
            .field("tls", &self.tls)
            .field("configure", &self.configure.len())
            .finish()
    }
}

impl Options {
    /// The defaults on `backend`.
    pub fn on(backend: Backend) -> Self {
        Self {
            backend,
            allowed_return_to: Vec::new(),
            tls: None,
            configure: Vec::new(),
        }
    }

    /// Also applies `change` to the config.
    #[must_use]
    pub fn configure(
        mut self,
        change: impl Fn(&mut ServiceConfig) + Send + Sync + 'static,
    ) -> Self {
        self.configure.push(Arc::new(change));
        self
    }
}

/// A client that sends a bearer key.
pub type Client = IdentityServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>`.
#[derive(Debug, Clone)]
pub struct Bearer(Option<AsciiMetadataValue>);

impl Bearer {
    /// Sends `authorization` with this value.
    pub fn new(authorization: &str) -> Self {
        Self(Some(authorization.parse().unwrap()))
    }
}

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
    /// Admin listener address (`/metrics`).
    pub admin_addr: std::net::SocketAddr,
    /// An HTTP client that never follows redirects, so tests see each hop.
    pub http: reqwest::Client,
    /// The user's browser: never follows redirects, keeps cookies.
    pub browser: web::Browser,
    /// The service's storage, to look at what a request wrote.
    pub storage: storage::Storage,
    channel: Channel,
    database_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _data: tempfile::TempDir,
    _postgres: Option<postgres::TestDatabase>,
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

    /// The shim's base URL, `http://127.0.0.1:PORT`.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The `details` of the audit trail's events of `kind`, oldest first,
    /// read from the database as an operator would.
    pub async fn audit_details(&self, kind: &str) -> Vec<serde_json::Value> {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&self.database_url)
            .await
            .unwrap();
        let details: Vec<String> = sqlx::query_scalar(
            "SELECT details FROM audit_events WHERE kind = $1 ORDER BY at, event_id",
        )
        .bind(kind.to_owned())
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let _ = conn.close().await;
        details
            .iter()
            .map(|text| serde_json::from_str(text).unwrap())
            .collect()
    }

    /// The admin listener's base URL, `http://127.0.0.1:PORT`.
    pub fn admin_base(&self) -> String {
        format!("http://{}", self.admin_addr)
    }

    /// Takes the PostgreSQL database away (`false`) or brings it back; `None`
    /// on SQLite.
    pub async fn set_database_reachable(&self, reachable: bool) -> Option<()> {
        self._postgres.as_ref()?.allow_connections(reachable).await;
        Some(())
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

/// A fresh encryption key (base64 of 32 bytes), as the config takes it.
pub fn encryption_key() -> String {
    server::app::generate_encryption_key()
        .expose_secret()
        .to_owned()
}

/// Starts the service on SQLite with two callers (core; admin+import) and the
/// demo apps.
pub async fn spawn_app() -> TestApp {
    spawn_with(Options::on(Backend::Sqlite))
        .await
        .expect("sqlite is always there")
}

/// Starts the service on `backend`; `None` (after saying why) when that is
/// PostgreSQL and none runs here, outside CI.
pub async fn spawn_on(backend: Backend) -> Option<TestApp> {
    spawn_with(Options::on(backend)).await
}

/// Starts the service as `options` say.
pub async fn spawn_with(options: Options) -> Option<TestApp> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::new(SimConfig::demo());
    let sim_running = sim.spawn().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let (database_url, postgres) = match options.backend {
        Backend::Sqlite => (
            format!("sqlite://{}", data.path().join("test.db").display()),
            None,
        ),
        Backend::Postgres => {
            let database = postgres::TestDatabase::create().await?;
            (database.url.clone(), Some(database))
        }
    };
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (grpc_addr, http_addr) = (grpc.local_addr().unwrap(), http.local_addr().unwrap());
    let admin_addr = admin.local_addr().unwrap();
    let mut config = ServiceConfig::new(&database_url)
        .listening(grpc_addr, http_addr, admin_addr)
        .allowing_return_to(&options.allowed_return_to)
        .with_caller("core-caller", CORE_KEY, &[Permission::Core])
        .with_caller(
            "admin-caller",
            ADMIN_KEY,
            &[Permission::Core, Permission::Import, Permission::Admin],
        );
    if let Some((cert_file, key_file, client_ca_file)) = options.tls {
        config.config.server.tls = Some(TlsConfig {
            cert_file,
            key_file,
            client_ca_file,
        });
    }
    for change in &options.configure {
        change(&mut config);
    }
    let app = Application::build_on(
        config.resolve(),
        Some(sim_running.base_url.clone()),
        Listeners { grpc, http, admin },
    )
    .await
    .unwrap();
    let storage = app.storage().clone();
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
        .connect_lazy();
    let http = web::browser();
    Some(TestApp {
        sim,
        sim_running,
        grpc_addr,
        http_addr,
        admin_addr,
        http,
        browser: web::Browser::new(),
        storage,
        channel,
        database_url,
        stop: Some(stop),
        task: Some(task),
        _data: data,
        _postgres: postgres,
    })
}

/// Runs each listed `async fn name(backend: Backend)` once on SQLite and once
/// on PostgreSQL, as `sqlite::name` and `postgres::name`.
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Starts the service on `$backend`, or returns from the test when that is a
/// PostgreSQL that is absent outside CI.
#[macro_export]
macro_rules! spawn {
    ($backend:expr) => {
        match $crate::spawn_on($backend).await {
            Some(app) => app,
            None => return,
        }
    };
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
