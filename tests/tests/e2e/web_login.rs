//! The browser flow over HTTP, hop by hop: the shim's authorize redirect, the
//! simulator's consent, the callback, the landing on `return_to`, and the
//! ticket redeemed over gRPC; and everything that must not get that far.
#![allow(clippy::unwrap_used)]

use e2e::web::{Browser, authorize_url, consent, consent_in, get, land, param, web_login};
use e2e::*;
use reqwest::StatusCode;
use server::pb::bind_user_request::{Account, Proof};
use server::pb::get_profile_request::Lookup;
use server::pb::{BindUserRequest, GetProfileRequest, MiniProgramLoginRequest, WebLoginRequest};
use tonic::Code;
use wechat_sim::{Consent, Endpoint, Fault};

/// Query parameters of an authorize request.
type Params<'a> = &'a [(&'a str, &'a str)];

async fn redeem(
    client: &mut Client,
    ticket: &str,
) -> Result<server::pb::WebLoginResponse, tonic::Status> {
    client
        .web_login(WebLoginRequest {
            ticket: ticket.into(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn official_account_login_lands_on_return_to_with_a_ticket_that_web_login_redeems(
    backend: Backend,
) {
    let app = spawn!(backend);
    app.sim.set_browser_user("wendy");
    let return_to = format!("{RETURN_TO}?next=%2Forders");
    let authorize = authorize_url(
        &app,
        OFFICIAL,
        &[
            ("return_to", &return_to),
            ("scope", "snsapi_userinfo"),
            ("state", "caller-7"),
        ],
    );

    let to_wechat = get(&app, &authorize).await;
    assert_eq!(to_wechat.status, StatusCode::FOUND);
    assert_eq!(to_wechat.headers["cache-control"], "no-store");
    assert_eq!(to_wechat.headers["referrer-policy"], "no-referrer");
    let wechat = to_wechat.location.clone().unwrap();
    assert_eq!(wechat.path(), "/connect/oauth2/authorize");
    assert_eq!(wechat.fragment(), Some("wechat_redirect"));
    let names: Vec<String> = wechat.query_pairs().map(|(k, _)| k.into_owned()).collect();
    assert_eq!(
        names,
        ["appid", "redirect_uri", "response_type", "scope", "state"],
        "WeChat matches the parameters in this order (WECHAT_API.md §1)"
    );
    assert_eq!(param(&wechat, "appid").unwrap(), OFFICIAL);
    assert_eq!(
        param(&wechat, "redirect_uri").unwrap(),
        format!("{}/oauth/{OFFICIAL}/callback", app.http_base())
    );
    assert_eq!(param(&wechat, "scope").unwrap(), "snsapi_userinfo");
    let state = param(&wechat, "state").unwrap();
    assert!(state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_ne!(state, "caller-7", "the caller's state never goes to WeChat");

    let callback = consent(&app, &authorize).await;
    let landed = land(&app, &callback).await;
    assert_eq!(
        landed.as_str().split('?').next().unwrap(),
        RETURN_TO,
        "{landed}"
    );
    assert_eq!(
        param(&landed, "next").unwrap(),
        "/orders",
        "return_to keeps its own query"
    );
    assert_eq!(param(&landed, "state").unwrap(), "caller-7");
    assert!(
        param(&landed, "code").is_none(),
        "WeChat's code never reaches return_to"
    );
    let ticket = param(&landed, "ticket").unwrap();

    let mut client = app.client();
    let login = redeem(&mut client, &ticket).await.unwrap();
    assert_eq!(login.openid, app.sim.openid(OFFICIAL, "wendy"));
    assert_eq!(
        Some(login.unionid.clone()),
        app.sim.unionid(OFFICIAL, "wendy")
    );
    assert!(login.is_new_user);
    let session = login.session.unwrap();
    assert!(!session.access_token.is_empty() && !session.refresh_token.is_empty());

    let profile = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(login.user_id.clone())),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    let wechat_user = app.sim.user("wendy");
    assert_eq!(profile.nickname, wechat_user.nickname, "userinfo was saved");
    assert_eq!(profile.avatar_url, wechat_user.headimgurl);
    assert_eq!(profile.identities.len(), 1);

    let again = redeem(&mut client, &ticket).await.unwrap_err();
    assert_eq!(again.code(), Code::InvalidArgument);
    assert_eq!(reason(&again).as_deref(), Some("TICKET_INVALID"));
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 1);
    assert_eq!(app.sim.calls(Endpoint::SnsUserInfo), 1);
    app.stop().await;
}

async fn official_accounts_default_to_snsapi_base_and_websites_always_use_qrconnect(
    backend: Backend,
) {
    let app = spawn!(backend);
    app.sim.set_browser_user("bo");
    let silent = authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]);
    let wechat = get(&app, &silent).await.location.unwrap();
    assert_eq!(param(&wechat, "scope").unwrap(), "snsapi_base");
    let landed = web_login(&app, OFFICIAL, &[("return_to", RETURN_TO)]).await;
    assert!(
        param(&landed, "state").is_none(),
        "no caller state, none handed back"
    );
    let mut client = app.client();
    let login = redeem(&mut client, &param(&landed, "ticket").unwrap())
        .await
        .unwrap();
    assert_eq!(login.unionid, "", "snsapi_base returns no unionid");
    assert_eq!(
        app.sim.calls(Endpoint::SnsUserInfo),
        0,
        "snsapi_base has no userinfo"
    );

    let website = authorize_url(
        &app,
        WEBSITE,
        &[("return_to", RETURN_TO), ("scope", "snsapi_base")],
    );
    let wechat = get(&app, &website).await.location.unwrap();
    assert_eq!(wechat.path(), "/connect/qrconnect");
    assert_eq!(param(&wechat, "scope").unwrap(), "snsapi_login");
    let landed = web_login(&app, WEBSITE, &[("return_to", RETURN_TO)]).await;
    let login = redeem(&mut client, &param(&landed, "ticket").unwrap())
        .await
        .unwrap();
    assert_eq!(login.openid, app.sim.openid(WEBSITE, "bo"));
    assert_eq!(Some(login.unionid), app.sim.unionid(WEBSITE, "bo"));
    app.stop().await;
}

async fn a_web_login_joins_the_mini_program_user_of_its_unionid_and_binds_by_ticket(
    backend: Backend,
) {
    let app = spawn!(backend);
    let mut client = app.client();
    let mini = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: app.sim.mint_login_code(MINI, "yan"),
        })
        .await
        .unwrap()
        .into_inner();
    app.sim.set_browser_user("yan");
    let landed = web_login(
        &app,
        OFFICIAL,
        &[("return_to", RETURN_TO), ("scope", "snsapi_userinfo")],
    )
    .await;
    let web = redeem(&mut client, &param(&landed, "ticket").unwrap())
        .await
        .unwrap();
    assert_eq!(web.user_id, mini.user_id, "one person, one user");
    assert!(!web.is_new_user);

    // A ticket as BindUser's proof: the website identity goes to an external account.
    let landed = web_login(&app, WEBSITE, &[("return_to", RETURN_TO)]).await;
    let ticket = param(&landed, "ticket").unwrap();
    let bound = client
        .bind_user(BindUserRequest {
            account: Some(Account::ExternalId("crm-yan".into())),
            proof: Some(Proof::Ticket(ticket.clone())),
            replace_existing: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(bound.user_id, mini.user_id);
    assert_eq!(bound.external_id, "crm-yan");
    assert_eq!(bound.identities.len(), 3);
    let spent = client
        .bind_user(BindUserRequest {
            account: Some(Account::ExternalId("crm-yan".into())),
            proof: Some(Proof::Ticket(ticket)),
            replace_existing: false,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&spent).as_deref(), Some("TICKET_INVALID"));
    app.stop().await;
}

async fn a_ticket_refused_by_bind_user_stays_usable_for_a_retry_with_replace_existing(
    backend: Backend,
) {
    let app = spawn!(backend);
    let mut client = app.client();
    app.sim.set_browser_user("zoe");
    let first = web_login(&app, OFFICIAL, &[("return_to", RETURN_TO)]).await;
    client
        .bind_user(BindUserRequest {
            account: Some(Account::ExternalId("crm-1".into())),
            proof: Some(Proof::Ticket(param(&first, "ticket").unwrap())),
            replace_existing: false,
        })
        .await
        .unwrap();
    let second = web_login(&app, OFFICIAL, &[("return_to", RETURN_TO)]).await;
    let ticket = param(&second, "ticket").unwrap();
    let bind_elsewhere = |replace_existing| BindUserRequest {
        account: Some(Account::ExternalId("crm-2".into())),
        proof: Some(Proof::Ticket(ticket.clone())),
        replace_existing,
    };
    let refused = client.bind_user(bind_elsewhere(false)).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists);
    assert_eq!(reason(&refused).as_deref(), Some("IDENTITY_ALREADY_BOUND"));
    let moved = client
        .bind_user(bind_elsewhere(true))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(moved.external_id, "crm-2");
    app.stop().await;
}

async fn a_declined_consent_goes_back_with_access_denied_and_calls_no_wechat_api(backend: Backend) {
    let app = spawn!(backend);
    app.sim.set_consent(Consent::Deny);
    let callback = consent(
        &app,
        &authorize_url(
            &app,
            OFFICIAL,
            &[
                ("return_to", RETURN_TO),
                ("scope", "snsapi_userinfo"),
                ("state", "s1"),
            ],
        ),
    )
    .await;
    assert!(param(&callback, "code").is_none());
    let landed = land(&app, &callback).await;
    assert_eq!(param(&landed, "error").unwrap(), "access_denied");
    assert_eq!(param(&landed, "state").unwrap(), "s1");
    assert!(param(&landed, "ticket").is_none());
    let repeat = land(&app, &callback).await;
    assert_eq!(
        param(&repeat, "error").unwrap(),
        "access_denied",
        "a double redirect too"
    );
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 0);
    app.stop().await;
}

async fn wechats_repeated_callback_gets_the_same_ticket_three_times_at_most_and_one_code_exchange(
    backend: Backend,
) {
    let app = spawn!(backend);
    app.sim.set_browser_user("dora");
    let callback = consent(
        &app,
        &authorize_url(
            &app,
            OFFICIAL,
            &[
                ("return_to", RETURN_TO),
                ("scope", "snsapi_userinfo"),
                ("state", "d"),
            ],
        ),
    )
    .await;
    // The first two arrive together, as WeChat's double redirect does.
    let (first, second) = tokio::join!(land(&app, &callback), land(&app, &callback));
    let third = land(&app, &callback).await;
    let fourth = land(&app, &callback).await;
    let tickets: Vec<String> = [&first, &second, &third, &fourth]
        .iter()
        .map(|landed| {
            assert_eq!(param(landed, "state").unwrap(), "d");
            param(landed, "ticket").unwrap()
        })
        .collect();
    assert!(
        tickets.iter().all(|ticket| *ticket == tickets[0]),
        "every repeat gets the first callback's ticket: {tickets:?}"
    );
    let fifth = get(&app, callback.as_str()).await;
    assert_eq!(
        fifth.status,
        StatusCode::BAD_REQUEST,
        "a fourth repeat is refused: {}",
        fifth.body
    );
    assert!(fifth.location.is_none());
    assert_eq!(
        app.sim.calls(Endpoint::SnsAccessToken),
        1,
        "one code exchange"
    );

    let mut client = app.client();
    let login = redeem(&mut client, &tickets[0]).await.unwrap();
    assert!(login.is_new_user);
    let again = redeem(&mut client, &tickets[0]).await.unwrap_err();
    assert_eq!(
        reason(&again).as_deref(),
        Some("TICKET_INVALID"),
        "one ticket, one login"
    );

    let mut another_code = callback.clone();
    another_code.query_pairs_mut().clear().extend_pairs([
        (
            "code",
            app.sim.mint_oauth_code(OFFICIAL, "dora", "snsapi_userinfo"),
        ),
        ("state", param(&callback, "state").unwrap()),
    ]);
    let refused = get(&app, another_code.as_str()).await;
    assert_eq!(
        refused.status,
        StatusCode::BAD_REQUEST,
        "the same state with another code"
    );
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 1);
    app.stop().await;
}

async fn a_wechat_failure_in_the_callback_goes_back_with_an_error_and_repeats_it(backend: Backend) {
    let app = spawn!(backend);
    app.sim.inject(
        Endpoint::SnsAccessToken,
        Fault::SystemError { consume_code: true },
        3,
    );
    let callback = consent(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO), ("state", "f")]),
    )
    .await;
    let landed = land(&app, &callback).await;
    assert_eq!(param(&landed, "error").unwrap(), "temporarily_unavailable");
    assert_eq!(param(&landed, "state").unwrap(), "f");
    let calls = app.sim.calls(Endpoint::SnsAccessToken);
    let repeat = land(&app, &callback).await;
    assert_eq!(param(&repeat, "error").unwrap(), "temporarily_unavailable");
    assert_eq!(
        app.sim.calls(Endpoint::SnsAccessToken),
        calls,
        "the repeat answers from the recorded failure"
    );
    app.stop().await;
}

async fn forged_tampered_replayed_and_foreign_states_get_a_plain_400_and_write_nothing(
    backend: Backend,
) {
    let app = spawn!(backend);
    let callback = consent(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO), ("state", "r")]),
    )
    .await;
    let code = param(&callback, "code").unwrap();
    let state = param(&callback, "state").unwrap();
    // A state this service issued, for the website app's login in this browser.
    let website_callback = consent(
        &app,
        &authorize_url(&app, WEBSITE, &[("return_to", RETURN_TO)]),
    )
    .await;
    let website_state = param(&website_callback, "state").unwrap();
    let tampered = {
        let mut bytes = state.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        String::from_utf8(bytes).unwrap()
    };
    let base = app.http_base();
    let forged = app.sim.mint_oauth_code(OFFICIAL, "mallory", "snsapi_base");
    for (what, url) in [
        (
            "no state",
            format!("{base}/oauth/{OFFICIAL}/callback?code={forged}"),
        ),
        (
            "forged state",
            format!(
                "{base}/oauth/{OFFICIAL}/callback?code={forged}&state=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
            ),
        ),
        (
            "tampered state",
            format!("{base}/oauth/{OFFICIAL}/callback?code={code}&state={tampered}"),
        ),
        (
            "malformed state",
            format!("{base}/oauth/{OFFICIAL}/callback?code={forged}&state=%3Cscript%3E"),
        ),
        (
            "this app's state at another app's callback",
            format!("{base}/oauth/{WEBSITE}/callback?code={code}&state={state}"),
        ),
        (
            "another app's state at this app's callback",
            format!("{base}/oauth/{OFFICIAL}/callback?code={code}&state={website_state}"),
        ),
    ] {
        let page = get(&app, &url).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            page.body
        );
        assert!(page.location.is_none(), "{what}: no redirect");
        assert!(
            page.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert!(
            !page.body.contains(&forged) && !page.body.contains(&code),
            "{what}: no code on the page"
        );
        assert!(!page.body.contains("<script>"), "{what}: escaped");
    }
    assert_eq!(
        app.sim.calls(Endpoint::SnsAccessToken),
        0,
        "no code was exchanged"
    );
    assert_eq!(
        app.storage.web_login_rows().await.unwrap(),
        0,
        "nothing was written"
    );

    land(&app, &callback).await;
    assert_eq!(app.storage.web_login_rows().await.unwrap(), 1);
    let replay = get(
        &app,
        &format!("{base}/oauth/{OFFICIAL}/callback?code={forged}&state={state}"),
    )
    .await;
    assert_eq!(
        replay.status,
        StatusCode::BAD_REQUEST,
        "a used state with another code"
    );
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 1);
    app.stop().await;
}

async fn a_callback_from_a_browser_that_did_not_start_the_login_gets_no_ticket(backend: Backend) {
    let app = spawn!(backend);
    app.sim.set_browser_user("victor");
    let victims_callback = consent(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO), ("state", "v")]),
    )
    .await;

    // Whoever saw the callback URL (a proxy log, a screenshot, history)
    // replays it from a browser of their own: with no cookie, and with the
    // cookie of a login of their own.
    let attacker = Browser::new();
    let without_cookie = attacker.get(victims_callback.as_str()).await;
    app.sim.set_browser_user("mallory");
    let attackers_callback = consent_in(
        &attacker,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]),
    )
    .await;
    let with_own_cookie = attacker.get(victims_callback.as_str()).await;
    for (what, page) in [
        ("without a cookie", &without_cookie),
        ("with another login's cookie", &with_own_cookie),
    ] {
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            page.body
        );
        assert_eq!(page.error(), Some("login_session_mismatch"), "{what}");
        assert!(page.body.contains("login_session_mismatch"), "{what}");
        assert!(page.location.is_none(), "{what}");
    }
    // Login CSRF: the attacker lures the victim's browser to the attacker's
    // own callback, to sign the victim in as the attacker.
    let lured = get(&app, attackers_callback.as_str()).await;
    assert_eq!(lured.status, StatusCode::BAD_REQUEST, "{}", lured.body);
    assert_eq!(lured.error(), Some("login_session_mismatch"));

    assert_eq!(
        app.sim.calls(Endpoint::SnsAccessToken),
        0,
        "no code was exchanged"
    );
    assert_eq!(
        app.storage.web_login_rows().await.unwrap(),
        0,
        "no state was consumed"
    );
    // The victim's own login is untouched.
    let landed = land(&app, &victims_callback).await;
    let login = redeem(&mut app.client(), &param(&landed, "ticket").unwrap())
        .await
        .unwrap();
    assert_eq!(login.openid, app.sim.openid(OFFICIAL, "victor"));
    app.stop().await;
}

async fn authorize_sets_a_login_cookie_and_writes_nothing(backend: Backend) {
    let app = spawn!(backend);
    let authorize = authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]);
    let to_wechat = get(&app, &authorize).await;
    assert_eq!(to_wechat.status, StatusCode::FOUND);
    let set_cookie = to_wechat.headers["set-cookie"].to_str().unwrap();
    // The shim's base is plain http on loopback here: no `Secure`, no
    // `__Host-` (over https it is `__Host-wxid-login` with `Secure`).
    assert!(set_cookie.starts_with("wxid-login="), "{set_cookie}");
    for attribute in ["; Path=/", "; Max-Age=600", "; HttpOnly", "; SameSite=Lax"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    let state = param(to_wechat.location.as_ref().unwrap(), "state").unwrap();
    assert!(state.len() <= 128 && state.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(app.storage.web_login_rows().await.unwrap(), 0);

    // With PostgreSQL gone, logins still start and forged callbacks are still
    // refused: neither touches the database.
    if app.set_database_reachable(false).await.is_some() {
        assert_eq!(get(&app, &authorize).await.status, StatusCode::FOUND);
        let forged = format!(
            "{}/oauth/{OFFICIAL}/callback?code=abc&state={state}x",
            app.http_base()
        );
        assert_eq!(get(&app, &forged).await.status, StatusCode::BAD_REQUEST);
        let stranger = Browser::new();
        let callback = format!(
            "{}/oauth/{OFFICIAL}/callback?code=abc&state={state}",
            app.http_base()
        );
        assert_eq!(
            stranger.get(&callback).await.error(),
            Some("login_session_mismatch")
        );
        app.set_database_reachable(true).await;
    }

    // The callback keeps the cookie: WeChat's repeat arrives with it.
    let callback = consent(&app, &authorize).await;
    let back = get(&app, callback.as_str()).await;
    assert_eq!(back.status, StatusCode::FOUND);
    assert!(back.headers.get("set-cookie").is_none());
    assert!(app.browser.cookie("wxid-login").is_some());
    app.stop().await;
}

async fn a_repeat_finishes_a_login_whose_first_callback_died_after_claiming_it(backend: Backend) {
    let app = spawn!(backend);
    app.sim.set_browser_user("ida");
    let callback = consent(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", RETURN_TO)]),
    )
    .await;
    // A replica claimed the state and died before completing it: its claim
    // (one second here) runs out, and the repeat takes the login over.
    let claim = storage::WebLoginClaim {
        state_id: param(&callback, "state").unwrap(),
        app_id: wechat_client::AppId::new(OFFICIAL).unwrap(),
        code: Some(param(&callback, "code").unwrap()),
        state_expires_at: std::time::SystemTime::now() + std::time::Duration::from_secs(600),
        claim_ttl: std::time::Duration::from_secs(1),
        at: std::time::SystemTime::now(),
    };
    assert!(matches!(
        app.storage.claim_web_login(&claim).await.unwrap(),
        storage::WebLoginClaimed::Claimed { .. }
    ));
    let landed = land(&app, &callback).await;
    let login = redeem(&mut app.client(), &param(&landed, "ticket").unwrap())
        .await
        .unwrap();
    assert_eq!(login.openid, app.sim.openid(OFFICIAL, "ida"));
    assert_eq!(app.sim.calls(Endpoint::SnsAccessToken), 1);
    app.stop().await;
}

async fn authorize_refuses_foreign_return_urls_and_bad_parameters_without_redirecting(
    backend: Backend,
) {
    let app = spawn!(backend);
    for bad in [
        "https://app.example/cb@evil.example",
        "https://app.example.evil.example/cb",
        "https://app.example/cbx",
        "https://app.example/cb/../admin",
        "http://app.example/cb",
        "https://app.example:8443/cb",
        "https://user@app.example/cb",
        "https://app.example/cb#fragment",
        "//app.example/cb",
        "javascript:alert(1)",
        "",
    ] {
        let page = get(&app, &authorize_url(&app, OFFICIAL, &[("return_to", bad)])).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{bad:?}: {}",
            page.body
        );
        assert!(page.location.is_none(), "{bad:?}: never an open redirect");
    }
    let cases: [(&str, Params, StatusCode); 6] = [
        ("no return_to", &[], StatusCode::BAD_REQUEST),
        (
            "a website scope on an Official Account",
            &[("return_to", RETURN_TO), ("scope", "snsapi_login")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "a state that is too long",
            &[("return_to", RETURN_TO), ("state", &"s".repeat(300))],
            StatusCode::BAD_REQUEST,
        ),
        (
            "a control character in state",
            &[("return_to", RETURN_TO), ("state", "a\u{1}b")],
            StatusCode::BAD_REQUEST,
        ),
        (
            "return_to twice",
            &[
                ("return_to", RETURN_TO),
                ("return_to", "https://evil.example/"),
            ],
            StatusCode::BAD_REQUEST,
        ),
        ("fine", &[("return_to", RETURN_TO)], StatusCode::FOUND),
    ];
    for (what, params, status) in cases {
        let hop = get(&app, &authorize_url(&app, OFFICIAL, params)).await;
        assert_eq!(hop.status, status, "{what}: {}", hop.body);
    }
    for (app_id, status) in [
        (MINI, StatusCode::NOT_FOUND),
        ("wx0000000000000999", StatusCode::NOT_FOUND),
        ("bad%20id", StatusCode::BAD_REQUEST),
    ] {
        let url = format!(
            "{}/oauth/{app_id}/authorize?return_to={}",
            app.http_base(),
            url::form_urlencoded::byte_serialize(RETURN_TO.as_bytes()).collect::<String>()
        );
        let page = get(&app, &url).await;
        assert_eq!(page.status, status, "{app_id}: {}", page.body);
        assert!(page.location.is_none());
    }
    assert_eq!(app.sim.calls(Endpoint::OAuthAuthorize), 0);
    app.stop().await;
}

/// Return URLs a URL parser would normalise into an allowed one, or that an
/// app behind `return_to` may read differently: each is refused as the raw
/// text the browser sent, with a plain 400 page, no redirect, no cookie.
async fn authorize_refuses_return_urls_bent_by_encoding_or_normalisation(backend: Backend) {
    let app = spawn!(backend);
    for bent in [
        "https://app.example/cb/..%2fadmin",
        "https://app.example/cb/..%5Cadmin",
        "https://app.example/cb/%2e%2e/cb/x",
        "https://app.example/cb/%252e%252e/admin",
        "https://app.example/cb/./x",
        "https://app.example/cb/..;/admin",
        "https://app.example/cb//evil.example",
        "https://app.example/cb\\..\\admin",
        "https:app.example/cb",
        "https:///app.example/cb",
        "https:/\\app.example/cb",
        "https://app.exa\tmple/cb",
        "https://app.example/cb\n",
        " https://app.example/cb",
        "https://app.example./cb",
        "https://app%2eexample/cb",
        "https://app\u{FF61}example/cb",
        "https://app.example:0443/cb",
        "https://app.example/cb#",
    ] {
        let page = get(&app, &authorize_url(&app, OFFICIAL, &[("return_to", bent)])).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{bent:?}: {}",
            page.body
        );
        assert!(page.location.is_none(), "{bent:?}: never a redirect");
        assert!(
            page.headers.get(reqwest::header::SET_COOKIE).is_none(),
            "{bent:?}: no cookie"
        );
        assert!(page.body.contains("return_to"), "{bent:?}: {}", page.body);
    }
    // The same app still goes on to WeChat for a return_to that is only longer.
    let fine = format!("{RETURN_TO}/mobile?next=%2Forders");
    let hop = get(
        &app,
        &authorize_url(&app, OFFICIAL, &[("return_to", &fine)]),
    )
    .await;
    assert_eq!(hop.status, StatusCode::FOUND, "{}", hop.body);
    assert_eq!(app.sim.calls(Endpoint::OAuthAuthorize), 0);
    app.stop().await;
}

async fn the_shim_serves_the_verification_file_jwks_and_health(backend: Backend) {
    let app = spawn!(backend);
    let base = app.http_base();
    let verify = get(&app, &format!("{base}/MP_verify_{MP_VERIFY_TOKEN}.txt")).await;
    assert_eq!(verify.status, StatusCode::OK);
    assert_eq!(verify.body, MP_VERIFY_TOKEN);
    let unknown = get(&app, &format!("{base}/MP_verify_nope.txt")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let jwks = get(&app, &format!("{base}/.well-known/jwks.json")).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwks: serde_json::Value = serde_json::from_str(&jwks.body).unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert!(
        key["kid"].is_string() && key.get("d").is_none(),
        "public only"
    );

    assert_eq!(
        get(&app, &format!("{base}/healthz")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, &format!("{base}/readyz")).await.status,
        StatusCode::OK
    );
    app.stop().await;
}

on_both_backends!(
    official_account_login_lands_on_return_to_with_a_ticket_that_web_login_redeems,
    official_accounts_default_to_snsapi_base_and_websites_always_use_qrconnect,
    a_web_login_joins_the_mini_program_user_of_its_unionid_and_binds_by_ticket,
    a_ticket_refused_by_bind_user_stays_usable_for_a_retry_with_replace_existing,
    a_declined_consent_goes_back_with_access_denied_and_calls_no_wechat_api,
    wechats_repeated_callback_gets_the_same_ticket_three_times_at_most_and_one_code_exchange,
    a_wechat_failure_in_the_callback_goes_back_with_an_error_and_repeats_it,
    forged_tampered_replayed_and_foreign_states_get_a_plain_400_and_write_nothing,
    a_callback_from_a_browser_that_did_not_start_the_login_gets_no_ticket,
    authorize_sets_a_login_cookie_and_writes_nothing,
    a_repeat_finishes_a_login_whose_first_callback_died_after_claiming_it,
    authorize_refuses_foreign_return_urls_and_bad_parameters_without_redirecting,
    authorize_refuses_return_urls_bent_by_encoding_or_normalisation,
    the_shim_serves_the_verification_file_jwks_and_health,
);
