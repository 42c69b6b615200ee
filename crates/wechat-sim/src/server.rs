//! Serving the simulator over TCP, with a hook that lets a request kill its own connection.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt as _;

use crate::connection_kill::ConnectionKill;
use crate::simulator::Simulator;

/// A simulator listening on a local port. Dropping it stops the server too.
#[derive(Debug)]
pub struct RunningSim {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, to point a WeChat client's base URL at.
    pub base_url: String,
    task: JoinHandle<()>,
}

impl RunningSim {
    /// Stop listening and close every connection; the port then refuses connections.
    pub async fn shutdown(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Simulator {
    /// The WeChat endpoints and the `/sim` control API as one router, to mount anywhere.
    ///
    /// A [`crate::Fault::ConnectionReset`] needs the socket, which only [`Simulator::spawn`]
    /// and [`Simulator::spawn_on`] give it; elsewhere it becomes a response whose body fails.
    pub fn router(&self) -> Router {
        crate::routes::router(self.clone())
    }

    /// Serve on `127.0.0.1` with a port the OS picks, in a background task.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn spawn(&self) -> std::io::Result<RunningSim> {
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        self.spawn_on(listener).await
    }

    /// Serve on a listener the caller bound, in a background task.
    ///
    /// # Errors
    /// When the listener's address cannot be read.
    pub async fn spawn_on(&self, listener: TcpListener) -> std::io::Result<RunningSim> {
        let addr = listener.local_addr()?;
        let task = tokio::spawn(accept_loop(listener, self.router()));
        Ok(RunningSim {
            addr,
            base_url: format!("http://{addr}"),
            task,
        })
    }
}

/// Accept until aborted. Connections live in a `JoinSet`, so aborting this task closes
/// them all along with the listener.
async fn accept_loop(listener: TcpListener, router: Router) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(error) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// HTTP/1.1 on one connection, until the client leaves or a request asks for a reset.
async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let reset_handle = ResetHandle::of(&stream);
    let kill = ConnectionKill::default();
    let service = {
        let kill = kill.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(kill.clone());
            router.clone().oneshot(request.map(Body::new))
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = kill.triggered() => {
            reset_handle.arm();
            tracing::debug!("connection reset by injected fault");
        }
    }
    // Dropping the connection closes the socket; armed, the close is an RST.
}

/// A second handle on the socket, to make its close abortive (SO_LINGER 0 sends an RST
/// instead of a FIN) once hyper owns the stream.
struct ResetHandle(Option<std::os::fd::OwnedFd>);

impl ResetHandle {
    fn of(stream: &TcpStream) -> Self {
        use std::os::fd::AsFd as _;
        Self(stream.as_fd().try_clone_to_owned().ok())
    }

    fn arm(&self) {
        if let Some(fd) = &self.0 {
            let _ = socket2::SockRef::from(fd).set_linger(Some(Duration::ZERO));
        }
    }
}
