//! RefreshToken rotation, reuse, grace and max lifetime, VerifyToken,
//! RevokeSession.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use e2e::*;
use server::pb::{
    MiniProgramLoginRequest, RefreshTokenRequest, RevokeSessionRequest, Session,
    VerifyTokenRequest, revoke_session_request::Target,
};
use tonic::Code;

async fn logged_in(app: &TestApp, client: &mut Client) -> (String, Session) {
    let response = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: app.sim.mint_login_code(MINI, "erin"),
        })
        .await
        .unwrap()
        .into_inner();
    (response.user_id, response.session.unwrap())
}

/// The defaults on `backend`, with `[sessions]` changed by `change`.
fn with_sessions(
    backend: Backend,
    change: impl Fn(&mut server::config::SessionConfig) + Send + Sync + 'static,
) -> Options {
    Options::on(backend).configure(move |config| change(&mut config.config.sessions))
}

async fn refresh(client: &mut Client, refresh_token: &str) -> Result<Session, tonic::Status> {
    client
        .refresh_token(RefreshTokenRequest {
            refresh_token: refresh_token.into(),
        })
        .await
        .map(|response| response.into_inner().session.unwrap())
}

/// The claims of an access token, read without verifying it.
fn claims(access_token: &str) -> serde_json::Value {
    let payload = access_token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

fn time_of(seconds: i64, nanos: i32) -> SystemTime {
    UNIX_EPOCH
        + Duration::new(
            u64::try_from(seconds).unwrap(),
            u32::try_from(nanos).unwrap(),
        )
}

/// When a session's refresh token and access token expire.
fn expiries(session: &Session) -> (SystemTime, SystemTime) {
    let refresh = session.refresh_token_expires_at.unwrap();
    let access = session.access_token_expires_at.unwrap();
    (
        time_of(refresh.seconds, refresh.nanos),
        time_of(access.seconds, access.nanos),
    )
}

async fn active(client: &mut Client, token: &str) -> bool {
    client
        .verify_token(VerifyTokenRequest {
            access_token: token.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .active
}

async fn verify_token_describes_an_active_token(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let (user_id, session) = logged_in(&app, &mut client).await;
    let verified = client
        .verify_token(VerifyTokenRequest {
            access_token: session.access_token,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verified.active);
    assert_eq!(
        (verified.user_id, verified.session_id, verified.app_id),
        (user_id, session.session_id, MINI.to_owned())
    );
    assert_eq!(verified.openid, app.sim.openid(MINI, "erin"));
    assert_eq!(verified.expires_at, session.access_token_expires_at);
    for junk in ["x", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
        assert!(!active(&mut client, junk).await, "{junk}");
    }
    let empty = client
        .verify_token(VerifyTokenRequest {
            access_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&empty).as_deref(), Some("access_token"));
    app.stop().await;
}

async fn refresh_rotates_and_a_reused_token_revokes_the_session(backend: Backend) {
    // Without a reuse grace, as before there was one: the very next
    // presentation of a rotated token revokes.
    let Some(app) = spawn_with(with_sessions(backend, |sessions| {
        sessions.refresh_reuse_grace = Duration::ZERO;
    }))
    .await
    else {
        return;
    };
    let mut client = app.client();
    let (_, first) = logged_in(&app, &mut client).await;
    let second = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: first.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap();
    assert_eq!(
        second.session_id, first.session_id,
        "a refresh keeps the session"
    );
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(active(&mut client, &second.access_token).await);

    let reused = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: first.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (reused.code(), reason(&reused).as_deref()),
        (Code::Unauthenticated, Some("REFRESH_TOKEN_REUSED"))
    );
    assert!(
        !active(&mut client, &second.access_token).await,
        "the whole session is revoked"
    );
    let after = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: second.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&after).as_deref(), Some("REFRESH_TOKEN_INVALID"));
    let unknown = client
        .refresh_token(RefreshTokenRequest {
            refresh_token: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&unknown).as_deref(), Some("REFRESH_TOKEN_INVALID"));
    app.stop().await;
}

async fn revoking_a_session_makes_its_tokens_inactive(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let (_, session) = logged_in(&app, &mut client).await;
    client
        .revoke_session(RevokeSessionRequest {
            target: Some(Target::SessionId(session.session_id.clone())),
        })
        .await
        .unwrap();
    assert!(!active(&mut client, &session.access_token).await);
    // Again: an already revoked session succeeds.
    client
        .revoke_session(RevokeSessionRequest {
            target: Some(Target::SessionId(session.session_id)),
        })
        .await
        .unwrap();
    let unknown = client
        .revoke_session(RevokeSessionRequest {
            target: Some(Target::SessionId(
                "0190c1e2-0000-7000-8000-000000000009".into(),
            )),
        })
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), reason(&unknown).as_deref()),
        (Code::NotFound, Some("SESSION_NOT_FOUND"))
    );
    let missing = client
        .revoke_session(RevokeSessionRequest { target: None })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&missing).as_deref(), Some("target"));
    app.stop().await;
}

/// `openssl genpkey -algorithm ed25519`: a throwaway key for this test.
const SIGNING_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJfhlgveE/cuFiEwq+xGRCFbRL3zLlV/2k+nuWfP5F7q\n-----END PRIVATE KEY-----\n";

async fn kid_of(app: &TestApp) -> (String, String) {
    let jwks: serde_json::Value = app
        .http
        .get(format!("{}/.well-known/jwks.json", app.http_base()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let mut client = app.client();
    let (_, session) = logged_in(app, &mut client).await;
    let header = session.access_token.split('.').next().unwrap().to_owned();
    (keys[0]["kid"].as_str().unwrap().to_owned(), header)
}

async fn a_configured_signing_key_signs_instead_of_a_generated_one(backend: Backend) {
    let configured = || {
        Options::on(backend).configure(|config| {
            let key = config.secret("SIGNING_KEY", SIGNING_KEY_PEM);
            config.config.sessions.signing_key = Some(key);
        })
    };
    let Some(first) = spawn_with(configured()).await else {
        return;
    };
    let (kid, header) = kid_of(&first).await;
    first.stop().await;
    let second = spawn_with(configured()).await.unwrap();
    let (again, _) = kid_of(&second).await;
    assert_eq!(kid, again, "two databases, one configured key");
    second.stop().await;
    let generated = spawn!(backend);
    let (other, _) = kid_of(&generated).await;
    assert_ne!(
        kid, other,
        "without a configured key, each database generates its own"
    );
    use base64::Engine;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(header["kid"], kid.as_str());
    generated.stop().await;
}

async fn every_access_token_is_unique_even_within_one_second(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let (_, login) = logged_in(&app, &mut client).await;
    // A login and three refreshes take milliseconds: several share a second,
    // and with it every other claim.
    let mut sessions = vec![login];
    for _ in 0..3 {
        let previous = &sessions[sessions.len() - 1].refresh_token;
        let next = refresh(&mut client, previous).await.unwrap();
        sessions.push(next);
    }
    let tokens: HashSet<&str> = sessions.iter().map(|s| s.access_token.as_str()).collect();
    assert_eq!(tokens.len(), sessions.len(), "no two access tokens alike");
    let mut jtis = HashSet::new();
    for session in &sessions {
        let claims = claims(&session.access_token);
        let jti = claims["jti"]
            .as_str()
            .unwrap_or_else(|| panic!("no jti in {claims}"));
        let bits = URL_SAFE_NO_PAD.decode(jti).map(|bytes| bytes.len() * 8);
        assert!(
            bits.is_ok_and(|bits| bits >= 128),
            "{jti}: 128+ bits of base64url"
        );
        jtis.insert(jti.to_owned());
        assert!(active(&mut client, &session.access_token).await);
    }
    assert_eq!(jtis.len(), sessions.len(), "every jti differs");
    app.stop().await;
}

async fn a_refresh_retried_within_the_grace_keeps_the_session(backend: Backend) {
    // The default grace: 10 s.
    let app = spawn!(backend);
    let mut client = app.client();
    let (_, login) = logged_in(&app, &mut client).await;
    // The answer to this refresh is lost on the way back...
    let lost = refresh(&mut client, &login.refresh_token).await.unwrap();
    // ...so the client presents the same refresh token again.
    let retried = refresh(&mut client, &login.refresh_token).await.unwrap();
    assert_eq!(retried.session_id, login.session_id, "the same session");
    assert_ne!(retried.refresh_token, lost.refresh_token);
    assert_ne!(retried.access_token, lost.access_token);
    assert!(active(&mut client, &retried.access_token).await);
    let next = refresh(&mut client, &retried.refresh_token).await.unwrap();
    assert_eq!(next.session_id, login.session_id);
    assert!(
        active(&mut client, &next.access_token).await,
        "the session stands"
    );

    let events = app.audit_details("refresh_grace").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["session_id"], login.session_id.as_str());
    let details = events[0].to_string();
    for token in [
        &login.refresh_token,
        &lost.refresh_token,
        &retried.refresh_token,
    ] {
        assert!(!details.contains(token.as_str()), "no token in {details}");
    }

    // The lost answer's token was retired by the grace use: whoever
    // presents it now holds a copy, and the session ends.
    let copied = refresh(&mut client, &lost.refresh_token).await.unwrap_err();
    assert_eq!(reason(&copied).as_deref(), Some("REFRESH_TOKEN_REUSED"));
    assert!(!active(&mut client, &next.access_token).await);
    app.stop().await;
}

async fn reuse_after_the_grace_or_of_an_older_token_revokes_the_session(backend: Backend) {
    let Some(app) = spawn_with(with_sessions(backend, |sessions| {
        sessions.refresh_reuse_grace = Duration::from_secs(1);
    }))
    .await
    else {
        return;
    };
    let mut client = app.client();

    // Two generations back, within the grace.
    let (_, first) = logged_in(&app, &mut client).await;
    let second = refresh(&mut client, &first.refresh_token).await.unwrap();
    let third = refresh(&mut client, &second.refresh_token).await.unwrap();
    let old = refresh(&mut client, &first.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(
        (old.code(), reason(&old).as_deref()),
        (Code::Unauthenticated, Some("REFRESH_TOKEN_REUSED"))
    );
    assert!(!active(&mut client, &third.access_token).await);

    // The previous token, after the grace.
    let (_, first) = logged_in(&app, &mut client).await;
    let second = refresh(&mut client, &first.refresh_token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = refresh(&mut client, &first.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(reason(&late).as_deref(), Some("REFRESH_TOKEN_REUSED"));
    assert!(!active(&mut client, &second.access_token).await);
    assert!(app.audit_details("refresh_grace").await.is_empty());
    app.stop().await;
}

async fn a_session_ends_at_its_max_lifetime(backend: Backend) {
    // Durations of seconds are fine (access_ttl = refresh_ttl only warns).
    let Some(app) = spawn_with(with_sessions(backend, |sessions| {
        sessions.access_ttl = Duration::from_secs(2);
        sessions.refresh_ttl = Duration::from_secs(2);
        sessions.max_lifetime = Duration::from_secs(3);
    }))
    .await
    else {
        return;
    };
    let mut client = app.client();
    let (_, login) = logged_in(&app, &mut client).await;
    let ends_by = SystemTime::now() + Duration::from_secs(3);
    let within = |session: &Session| {
        let (refresh_expires, access_expires) = expiries(session);
        assert!(
            refresh_expires <= ends_by,
            "{refresh_expires:?} > {ends_by:?}"
        );
        assert!(
            access_expires <= ends_by,
            "{access_expires:?} > {ends_by:?}"
        );
    };
    within(&login);
    let early = refresh(&mut client, &login.refresh_token).await.unwrap();
    within(&early);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let late = refresh(&mut client, &early.refresh_token).await.unwrap();
    within(&late);
    assert!(
        expiries(&late).0 < SystemTime::now() + Duration::from_secs(2),
        "cut to the session's end, short of a full refresh_ttl"
    );

    tokio::time::sleep(
        ends_by
            .duration_since(SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let ended = refresh(&mut client, &late.refresh_token).await.unwrap_err();
    assert_eq!(
        (ended.code(), reason(&ended).as_deref()),
        (Code::Unauthenticated, Some("SESSION_EXPIRED"))
    );
    let retired = refresh(&mut client, &login.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(
        reason(&retired).as_deref(),
        Some("SESSION_EXPIRED"),
        "an ended session is not revoked for reuse"
    );
    assert!(!active(&mut client, &late.access_token).await);
    app.stop().await;
}

on_both_backends!(
    every_access_token_is_unique_even_within_one_second,
    a_refresh_retried_within_the_grace_keeps_the_session,
    reuse_after_the_grace_or_of_an_older_token_revokes_the_session,
    a_session_ends_at_its_max_lifetime,
    a_configured_signing_key_signs_instead_of_a_generated_one,
    verify_token_describes_an_active_token,
    refresh_rotates_and_a_reused_token_revokes_the_session,
    revoking_a_session_makes_its_tokens_inactive,
);
