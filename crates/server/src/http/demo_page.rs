//! The demo's landing page at `/demo/`: the `return_to` of the demo web apps.
//! It starts a browser login and, once WeChat (the simulator) sent the browser
//! back, shows the ticket with the grpcurl command that redeems it: what an
//! app's own page would do with its backend.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;

use crate::http::pages::{escape, html};

/// The page's path, which the demo apps allow as `return_to`.
pub(crate) const DEMO_PATH: &str = "/demo/";

/// What the page links to.
#[derive(Debug, Clone)]
pub(crate) struct DemoPage {
    /// The shim's base URL, e.g. `http://127.0.0.1:8080`.
    pub http_base: String,
    /// The gRPC address for the grpcurl command.
    pub grpc: SocketAddr,
    /// The demo Official Account.
    pub official_account: String,
    /// The demo website app.
    pub website: String,
}

#[derive(Debug, Deserialize)]
struct Landing {
    ticket: Option<String>,
    error: Option<String>,
    state: Option<String>,
}

/// `GET /demo/`.
pub(crate) fn demo_routes(page: DemoPage) -> Router {
    Router::new()
        .route(DEMO_PATH, get(landing))
        .with_state(page)
}

async fn landing(State(page): State<DemoPage>, Query(landing): Query<Landing>) -> Response {
    let return_to = format!("{}{DEMO_PATH}", page.http_base);
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    let start = |app: &str, scope: &str| {
        format!(
            "{}/oauth/{app}/authorize?return_to={encoded}&scope={scope}&state=demo",
            page.http_base
        )
    };
    let outcome = match (&landing.ticket, &landing.error) {
        (Some(ticket), _) => format!(
            "<h2>Back from WeChat with a ticket</h2>\n<p>state: <code id=\"state\">{state}</code></p>\n\
             <p>ticket: <code id=\"ticket\">{ticket}</code></p>\n\
             <p>Your backend redeems it once, within five minutes:</p>\n<pre>grpcurl -plaintext -d '{{\"ticket\":\"{ticket}\"}}' {grpc} wechat.identity.v1.IdentityService/WebLogin</pre>\n",
            state = escape(landing.state.as_deref().unwrap_or_default()),
            ticket = escape(ticket),
            grpc = page.grpc,
        ),
        (None, Some(error)) => format!(
            "<h2>Back from WeChat without a login</h2>\n<p>error: <code id=\"error\">{}</code></p>\n",
            escape(error)
        ),
        (None, None) => String::new(),
    };
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>wechat-identity demo</title></head>\n<body>\n\
         <h1>wechat-identity demo: web login</h1>\n{outcome}\
         <ul>\n<li><a id=\"login-oa\" href=\"{oa}\">Log in with the demo Official Account (snsapi_userinfo)</a></li>\n\
         <li><a id=\"login-oa-base\" href=\"{oa_base}\">Log in with the demo Official Account (snsapi_base)</a></li>\n\
         <li><a id=\"login-web\" href=\"{web}\">Log in with the demo website app (QR connect)</a></li>\n</ul>\n\
         <p>WeChat is simulated: the consent page answers at once as the simulator's browser user.</p>\n</body></html>\n",
        oa = escape(&start(&page.official_account, "snsapi_userinfo")),
        oa_base = escape(&start(&page.official_account, "snsapi_base")),
        web = escape(&start(&page.website, "snsapi_login")),
    );
    html(StatusCode::OK, body)
}
