//! How a request asks the server to drop the TCP connection it came on: the
//! route sets it off, the connection's task waits for it.

use std::sync::Arc;

use tokio::sync::Notify;

/// Lets a request drop the TCP connection it came on, with no response.
#[derive(Clone, Debug, Default)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    /// Asks the connection's task to reset the socket.
    pub(crate) fn trigger(&self) {
        self.0.notify_one();
    }

    /// Resolves once a request has asked for the reset.
    pub(crate) async fn triggered(&self) {
        self.0.notified().await;
    }
}
