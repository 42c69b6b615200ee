//! The gRPC listener: `grpc.health.v1` (for Kubernetes probes), server
//! reflection in both `v1` and `v1alpha` (grpcurl and Python's client speak
//! v1alpha), and the services the caller adds; a request timeout honouring
//! the caller's `grpc-timeout`, a global limit on calls in flight beyond which
//! calls are shed at once (RESOURCE_EXHAUSTED), and a drain on shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::Routes;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;

/// How much one replica takes on.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrpcLimits {
    /// The longest a call may run when its caller set no shorter deadline.
    pub request_timeout: Duration,
    /// Calls in flight across all connections; one more is shed immediately
    /// (a queue would only add latency under overload; callers back off).
    pub max_in_flight: usize,
}

/// Accepted connections with Nagle's algorithm off: tonic's own `tcp_nodelay`
/// applies only to listeners it binds itself, and without it a response
/// written in two pieces waits for the caller's delayed ACK (~40 ms).
pub fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// The listener's TLS settings from the config: TLS with the configured
/// certificate, and mutual TLS when a client CA is set.
///
/// # Errors
/// Material rustls refuses (a key that does not parse, say), said plainly.
pub(crate) fn tls_config(tls: &crate::config::GrpcTls) -> Result<ServerTlsConfig, String> {
    use secrecy::ExposeSecret;
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        &tls.cert_pem,
        tls.key_pem.expose_secret(),
    ));
    if let Some(ca) = &tls.client_ca_pem {
        config = config.client_ca_root(Certificate::from_pem(ca));
    }
    // Building a server with it makes rustls check the material now, at start.
    Server::builder()
        .tls_config(config.clone())
        .map_err(|e| format!("server.tls: the certificate or key is not usable: {e}"))?;
    Ok(config)
}

/// The standard services: health and reflection over `descriptor_sets` (the
/// encoded sets of the services that will be served, health's is added).
///
/// # Errors
/// A descriptor set that does not decode.
pub(crate) fn standard_routes(
    descriptor_sets: &[&[u8]],
) -> Result<(HealthReporter, Routes), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let configure = || {
        descriptor_sets.iter().fold(
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
            |builder, set| builder.register_encoded_file_descriptor_set(set),
        )
    };
    let v1 = configure().build_v1()?;
    let v1alpha = configure().build_v1alpha()?;
    Ok((
        reporter,
        Routes::new(health).add_service(v1).add_service(v1alpha),
    ))
}

/// Serves `routes` on `listener` until `shutdown` resolves, then stops
/// accepting and lets calls in flight finish.
///
/// # Errors
/// The transport failed.
pub(crate) async fn serve(
    listener: TcpListener,
    routes: Routes,
    limits: GrpcLimits,
    tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let overload = ServiceBuilder::new()
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(limits.max_in_flight))
        .into_inner();
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    builder
        .timeout(limits.request_timeout)
        .layer(overload)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    use super::*;

    async fn channel(url: String) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(url)
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    async fn start() -> (
        String,
        HealthReporter,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let (reporter, routes) = standard_routes(&[]).expect("routes");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = GrpcLimits {
            request_timeout: Duration::from_secs(5),
            max_in_flight: 64,
        };
        let task = tokio::spawn(async move {
            serve(listener, routes, limits, None, async {
                let _ = stopped.await;
            })
            .await
            .expect("serves");
        });
        (url, reporter, stop, task)
    }

    #[tokio::test]
    async fn health_answers_and_follows_the_reporter() {
        let (url, reporter, stop, task) = start().await;
        let mut health = HealthClient::new(channel(url).await);
        let status =
            |r: tonic::Response<tonic_health::pb::HealthCheckResponse>| r.into_inner().status;
        let check = HealthCheckRequest {
            service: String::new(),
        };
        assert_eq!(
            status(health.check(check.clone()).await.expect("check")),
            ServingStatus::Serving as i32
        );
        reporter
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
        assert_eq!(
            status(health.check(check).await.expect("check")),
            ServingStatus::NotServing as i32
        );
        stop.send(()).expect("stop");
        task.await.expect("drained and returned");
    }

    #[tokio::test]
    async fn reflection_lists_the_services_like_grpcurl_list() {
        let (url, _reporter, stop, task) = start().await;
        let mut reflection = ServerReflectionClient::new(channel(url).await);
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = reflection
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .expect("rpc")
            .into_inner();
        let response = stream
            .message()
            .await
            .expect("message")
            .expect("one response");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("expected a service list");
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            names.iter().any(|n| n == "grpc.health.v1.Health"),
            "{names:?}"
        );
        stop.send(()).expect("stop");
        task.await.expect("stopped");
    }
}
