//! RefreshToken rotation and reuse, VerifyToken, RevokeSession.
#![allow(clippy::unwrap_used)]

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
    let app = spawn!(backend);
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

on_both_backends!(
    verify_token_describes_an_active_token,
    refresh_rotates_and_a_reused_token_revokes_the_session,
    revoking_a_session_makes_its_tokens_inactive,
);
