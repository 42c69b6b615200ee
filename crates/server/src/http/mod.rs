//! The HTTP shim on its own port: what browsers, WeChat's console and
//! Kubernetes need over plain HTTP.
//!
//! - [`oauth`]: the web login redirect and callback, behind [`limits`] (a
//!   rate limit per client address, a concurrency limit, a request timeout);
//! - [`plain_routes`]: health, readiness, the JWKS and `MP_verify_` files;
//! - [`demo_page`]: the demo's `return_to` landing page;
//! - [`pages`]: redirects and error pages, shared by all of them;
//! - [`serve`]: the listener (HTTP/1.1, a connection cap, a header-read timeout);
//! - `trace`: a span per request.

pub(crate) mod demo_page;
pub(crate) mod limits;
pub(crate) mod oauth;
pub(crate) mod pages;
mod plain_routes;
pub(crate) mod serve;
mod trace;

pub(crate) use oauth::{OAuthShim, oauth_routes};
pub(crate) use plain_routes::{Readiness, ShimState, plain_routes};
pub(crate) use trace::trace_request;
