//! The consent pages a browser opens: `/connect/oauth2/authorize` (Official Accounts,
//! WECHAT_API.md §1) and `/connect/qrconnect` (websites, §6). The simulated user answers
//! at once, so a page either redirects to the callback or shows an error page.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use crate::browser::Consent;
use crate::config::SimApp;
use crate::endpoint::Endpoint;
use crate::reply::authorize_error_page;
use crate::simulator::Simulator;
use wechat_types::AppKind;

/// §1: the link is regex-matched; these come first, in this order.
const REQUIRED_ORDER: [&str; 4] = ["appid", "redirect_uri", "response_type", "scope"];
/// §1: extras that may follow `state`.
const TRAILING_EXTRAS: [&str; 2] = ["forcePopup", "connect_redirect"];
/// §1: `state` is at most 128 bytes on the Official Account page.
const MAX_STATE_BYTES: usize = 128;

/// `GET /connect/oauth2/authorize?appid&redirect_uri&response_type=code&scope&state`.
pub(crate) async fn oauth_authorize(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(
        &sim,
        Endpoint::OAuthAuthorize,
        query.as_deref().unwrap_or_default(),
    )
}

/// `GET /connect/qrconnect?appid&redirect_uri&response_type=code&scope=snsapi_login&state`.
pub(crate) async fn qr_connect(
    State(sim): State<Simulator>,
    RawQuery(query): RawQuery,
) -> Response {
    authorize(
        &sim,
        Endpoint::QrConnect,
        query.as_deref().unwrap_or_default(),
    )
}

/// A page that is not a redirect: the error code from the §1 table, if it has one.
struct PageError {
    code: Option<u32>,
    what: &'static str,
}

const fn page_error(code: Option<u32>, what: &'static str) -> PageError {
    PageError { code, what }
}

fn authorize(sim: &Simulator, endpoint: Endpoint, raw_query: &str) -> Response {
    match check_request(sim, endpoint, raw_query) {
        Ok(request) => respond(sim, request),
        Err(error) => authorize_error_page(error.code, error.what),
    }
}

/// A request the page accepted.
struct Accepted<'a> {
    app: &'a SimApp,
    redirect_uri: Url,
    scope: String,
    state: String,
}

fn check_request<'a>(
    sim: &'a Simulator,
    endpoint: Endpoint,
    raw_query: &str,
) -> Result<Accepted<'a>, PageError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(raw_query.as_bytes())
        .into_owned()
        .collect();
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    };
    let app_id = value("appid").ok_or(page_error(Some(10012), "appid"))?;
    let redirect_uri = value("redirect_uri").ok_or(page_error(Some(10011), "redirect_uri"))?;
    let scope = value("scope").ok_or(page_error(Some(10010), "scope"))?;
    let names: Vec<&str> = pairs.iter().map(|(key, _)| key.as_str()).collect();
    if !in_documented_order(&names) {
        return Err(page_error(None, "参数顺序不对"));
    }
    if value("response_type") != Some("code") {
        return Err(page_error(None, "response_type"));
    }
    let app = page_app(sim, endpoint, app_id)?;
    let allowed: &[&str] = match app.kind {
        AppKind::OfficialAccount => &["snsapi_base", "snsapi_userinfo"],
        AppKind::Website => &["snsapi_login"],
        AppKind::MiniProgram => &[],
    };
    if !scope.split(',').all(|part| allowed.contains(&part)) {
        return Err(page_error(Some(10005), "scope"));
    }
    // §13: the callback host must equal the configured domain exactly.
    let redirect_uri =
        Url::parse(redirect_uri).map_err(|_| page_error(Some(10003), "redirect_uri"))?;
    if let Some(domain) = &app.oauth_domain
        && !redirect_uri
            .host_str()
            .is_some_and(|host| host.eq_ignore_ascii_case(domain))
    {
        return Err(page_error(Some(10003), "redirect_uri"));
    }
    let state = value("state").unwrap_or_default();
    // §1: a-zA-Z0-9, at most 128 bytes; qrconnect has no such limit (§1, D6b).
    if endpoint == Endpoint::OAuthAuthorize
        && (state.len() > MAX_STATE_BYTES
            || !state.bytes().all(|byte| byte.is_ascii_alphanumeric()))
    {
        return Err(page_error(None, "state"));
    }
    Ok(Accepted {
        app,
        redirect_uri,
        scope: scope.to_owned(),
        state: state.to_owned(),
    })
}

/// `appid, redirect_uri, response_type, scope`, then optionally `state`, then optionally
/// `forcePopup` and `connect_redirect`, each at most once.
fn in_documented_order(names: &[&str]) -> bool {
    let Some(rest) = names.strip_prefix(&REQUIRED_ORDER[..]) else {
        return false;
    };
    let extras = rest.strip_prefix(&["state"][..]).unwrap_or(rest);
    extras
        .iter()
        .enumerate()
        .all(|(index, name)| TRAILING_EXTRAS.contains(name) && !extras[..index].contains(name))
}

/// The app the page is for. Unknown: 10012. A website appid on the Official Account page:
/// 10016 (§1). Any other kind the page does not serve: 10012.
fn page_app<'a>(
    sim: &'a Simulator,
    endpoint: Endpoint,
    app_id: &str,
) -> Result<&'a SimApp, PageError> {
    let app = sim
        .config()
        .app(app_id)
        .ok_or(page_error(Some(10012), "appid"))?;
    match (endpoint, app.kind) {
        (Endpoint::OAuthAuthorize, AppKind::OfficialAccount)
        | (Endpoint::QrConnect, AppKind::Website) => Ok(app),
        (Endpoint::OAuthAuthorize, AppKind::Website) => Err(page_error(Some(10016), "appid")),
        _ => Err(page_error(Some(10012), "appid")),
    }
}

/// The browser user answers: consent redirects with `code` and `state`, refusal with
/// `state` only (§1 callback). The code goes before any fragment of the callback.
fn respond(sim: &Simulator, request: Accepted<'_>) -> Response {
    let Accepted {
        app,
        mut redirect_uri,
        scope,
        state,
    } = request;
    let (user, consent) = {
        let world = sim.state();
        (world.browser.user.clone(), world.browser.consent)
    };
    {
        let mut query = redirect_uri.query_pairs_mut();
        if consent == Consent::Allow {
            query.append_pair("code", &sim.mint_oauth_code(&app.app_id, &user, &scope));
        }
        query.append_pair("state", &state);
    }
    match HeaderValue::from_str(redirect_uri.as_str()) {
        Ok(location) => (StatusCode::FOUND, [(header::LOCATION, location)]).into_response(),
        Err(_) => authorize_error_page(Some(10003), "redirect_uri"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_order_is_accepted_with_or_without_state_and_extras() {
        assert!(in_documented_order(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope"
        ]));
        assert!(in_documented_order(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
            "forcePopup",
            "connect_redirect"
        ]));
        assert!(in_documented_order(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "connect_redirect"
        ]));
    }

    #[test]
    fn any_other_order_is_refused() {
        assert!(!in_documented_order(&[
            "redirect_uri",
            "appid",
            "response_type",
            "scope"
        ]));
        assert!(!in_documented_order(&[
            "appid",
            "redirect_uri",
            "scope",
            "response_type"
        ]));
        assert!(!in_documented_order(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "forcePopup",
            "state"
        ]));
        assert!(!in_documented_order(&[
            "appid",
            "redirect_uri",
            "response_type",
            "scope",
            "lang"
        ]));
    }
}
