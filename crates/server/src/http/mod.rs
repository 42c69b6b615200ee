//! The HTTP shim on its own port: what browsers, WeChat's console and
//! Kubernetes need over plain HTTP. The OAuth redirect and callback join it
//! with the service; the routes here need nothing but their state.

mod plain_routes;

pub use plain_routes::{Readiness, ShimState, plain_routes};
