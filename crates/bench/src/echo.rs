//! The baseline server: a bare tonic unary echo, on the same tonic and the
//! same default multi-threaded runtime as wechat-identity, nothing else.

use std::net::SocketAddr;

/// The generated echo service.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("bench.echo.v1");
}

#[derive(Debug, Default)]
struct Echo;

#[tonic::async_trait]
impl pb::echo_server::Echo for Echo {
    async fn echo(
        &self,
        request: tonic::Request<pb::EchoMessage>,
    ) -> Result<tonic::Response<pb::EchoMessage>, tonic::Status> {
        Ok(tonic::Response::new(request.into_inner()))
    }
}

/// Serves the echo on `listen` until killed; says `echo serving` once bound.
///
/// # Errors
/// The address could not be bound.
pub(crate) async fn serve(listen: SocketAddr) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| e.to_string())?;
    println!("echo serving on {listen}");
    tonic::transport::Server::builder()
        .add_service(pb::echo_server::EchoServer::new(Echo))
        // As wechat-identity's listener: Nagle's algorithm off.
        .serve_with_incoming(server::grpc_server::incoming(listener))
        .await
        .map_err(|e| e.to_string())
}
