//! `jscode2session`, `getuserphonenumber` and `checksession` against the simulator,
//! with every errcode the client maps and the retry rules for single-use codes.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use wechat_client::{Code, Deadline, Error, ErrorKind, SessionKey, TransportFailure};
use wechat_sim::{Endpoint, Fault, SimConfig};

#[tokio::test]
async fn code_to_session_returns_the_users_openid_session_key_and_unionid() {
    let h = start().await;
    let code = h.sim.mint_login_code(MINI, "alice");
    let session = h
        .client
        .code_to_session(
            &creds(MINI, MINI_SECRET),
            &Code::new(code),
            Deadline::none(),
        )
        .await
        .unwrap();
    assert_eq!(session.openid.as_str(), h.sim.openid(MINI, "alice"));
    assert_eq!(
        session.unionid.map(String::from),
        h.sim.unionid(MINI, "alice")
    );
    assert_eq!(
        Some(session.session_key.expose_secret().to_owned()),
        h.sim.session_key(MINI, "alice")
    );
}

#[tokio::test]
async fn an_app_without_open_platform_gets_no_unionid() {
    let h = start().await;
    let code = h.sim.mint_login_code(LONE_MINI, "alice");
    let session = h
        .client
        .code_to_session(
            &creds(LONE_MINI, LONE_MINI_SECRET),
            &Code::new(code),
            Deadline::none(),
        )
        .await
        .unwrap();
    assert!(session.unionid.is_none());
}

#[tokio::test]
async fn a_reused_code_is_code_used_and_not_retried() {
    let h = start().await;
    let app = creds(MINI, MINI_SECRET);
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    h.client
        .code_to_session(&app, &code, Deadline::none())
        .await
        .unwrap();
    let error = h
        .client
        .code_to_session(&app, &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::CodeUsed));
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 2);
}

#[tokio::test]
async fn unknown_and_expired_codes_are_invalid_codes() {
    let h = start().await;
    let app = creds(MINI, MINI_SECRET);
    let unknown = h
        .client
        .code_to_session(&app, &Code::new("no-such-code"), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(unknown.kind(), Some(ErrorKind::InvalidCode));

    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    h.sim.advance_clock(Duration::from_secs(301));
    let expired = h
        .client
        .code_to_session(&app, &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(expired.kind(), Some(ErrorKind::InvalidCode));
}

#[tokio::test]
async fn a_code_of_another_app_is_an_invalid_code() {
    let h = start().await;
    let code = Code::new(h.sim.mint_login_code(LONE_MINI, "alice"));
    let error = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::InvalidCode));
}

#[tokio::test]
async fn wrong_secret_and_unknown_app_are_misconfiguration() {
    let h = start().await;
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let wrong_secret = h
        .client
        .code_to_session(&creds(MINI, "not-the-secret"), &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(wrong_secret.kind(), Some(ErrorKind::AppMisconfigured));
    let unknown_app = h
        .client
        .code_to_session(
            &creds("wx0000000000000099", MINI_SECRET),
            &code,
            Deadline::none(),
        )
        .await
        .unwrap_err();
    assert_eq!(unknown_app.kind(), Some(ErrorKind::AppMisconfigured));
}

#[tokio::test]
async fn every_injected_errcode_maps_to_its_kind_without_retry() {
    let h = start().await;
    let app = creds(MINI, MINI_SECRET);
    let cases = [
        (45011, ErrorKind::RateLimited),
        (45009, ErrorKind::QuotaExceeded),
        (40226, ErrorKind::CodeBlocked),
        (40164, ErrorKind::AppMisconfigured),
        (40013, ErrorKind::AppMisconfigured),
        (40125, ErrorKind::AppMisconfigured),
        (40029, ErrorKind::InvalidCode),
        (40163, ErrorKind::CodeUsed),
        (48001, ErrorKind::Unauthorized),
        (99999, ErrorKind::Unknown),
    ];
    for (errcode, kind) in cases {
        h.sim.reset_calls();
        h.sim
            .inject(Endpoint::JsCode2Session, Fault::Errcode { errcode }, 1);
        let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
        let error = h
            .client
            .code_to_session(&app, &code, Deadline::none())
            .await
            .unwrap_err();
        let Error::WeChat(wechat) = &error else {
            panic!("{errcode}: expected a WeChat error, got {error:?}")
        };
        assert_eq!((wechat.errcode, wechat.kind), (errcode, kind));
        assert!(
            wechat.raw_errmsg().contains("rid:"),
            "errmsg keeps WeChat's rid suffix for logs"
        );
        assert!(
            !error.to_string().contains("rid:"),
            "the rid stays out of the error text"
        );
        assert_eq!(
            h.sim.calls(Endpoint::JsCode2Session),
            1,
            "errcode {errcode} is not retried"
        );
    }
}

#[tokio::test]
async fn system_error_is_retried_and_the_unconsumed_code_then_works() {
    let h = start().await;
    h.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError {
            consume_code: false,
        },
        1,
    );
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let session = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(session.openid.as_str(), h.sim.openid(MINI, "alice"));
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 2);
}

#[tokio::test]
async fn a_code_consumed_by_a_system_error_is_reported_unavailable_not_used() {
    let h = start().await;
    h.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError { consume_code: true },
        1,
    );
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let error = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::CodeLostToFailedAttempt));
    assert!(error.is_unavailable());
    // One retry met 40163; the consumed code was not sent a third time.
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 2);
}

#[tokio::test]
async fn persistent_system_errors_give_busy_after_the_attempt_budget() {
    let h = start().await;
    h.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError {
            consume_code: false,
        },
        10,
    );
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let error = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::Busy));
    assert!(error.is_unavailable());
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 3);
}

#[tokio::test]
async fn connection_resets_and_5xx_are_retried() {
    let h = start().await;
    h.sim
        .inject(Endpoint::JsCode2Session, Fault::ConnectionReset, 1);
    h.sim.inject(
        Endpoint::JsCode2Session,
        Fault::HttpStatus { status: 502 },
        1,
    );
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    h.client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap();
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 3);
}

#[tokio::test]
async fn resets_on_every_attempt_end_in_a_transport_error() {
    let h = start().await;
    h.sim
        .inject(Endpoint::JsCode2Session, Fault::ConnectionReset, 3);
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let error = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, Deadline::none())
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Transport {
                failure: TransportFailure::ConnectionLost,
                attempts: 3,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_unavailable());
}

#[tokio::test]
async fn the_deadline_bounds_retries_and_no_call_starts_after_it() {
    let h = start().await;
    h.sim
        .inject(Endpoint::JsCode2Session, Fault::Delay { millis: 400 }, 5);
    let code = Code::new(h.sim.mint_login_code(MINI, "alice"));
    let started = tokio::time::Instant::now();
    let error = h
        .client
        .code_to_session(
            &creds(MINI, MINI_SECRET),
            &code,
            Deadline::after(Duration::from_millis(150)),
        )
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error:?}");
    assert!(
        started.elapsed() < Duration::from_millis(380),
        "the caller was released at its deadline"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 1);

    let passed = Deadline::at(tokio::time::Instant::now());
    let error = h
        .client
        .code_to_session(&creds(MINI, MINI_SECRET), &code, passed)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::DeadlineExceeded { .. }));
    assert_eq!(h.sim.calls(Endpoint::JsCode2Session), 1);
}

#[tokio::test]
async fn phone_number_comes_back_with_a_string_country_code() {
    let h = start().await;
    let manager = h.manager();
    let expected = h.sim.user("alice").phone.unwrap();
    let code = Code::new(h.sim.mint_phone_code(MINI, "alice"));
    let phone = manager
        .phone_number(&app(MINI), &code, None, Deadline::none())
        .await
        .unwrap();
    assert_eq!(phone.phone_number, expected.phone_number);
    assert_eq!(phone.pure_phone_number, expected.pure_phone_number);
    assert_eq!(phone.country_code, "86");
    assert_eq!(phone.watermark.appid, MINI);
    assert!(
        !format!("{phone:?}").contains(&expected.pure_phone_number),
        "Debug hides the number"
    );

    let reused = manager
        .phone_number(&app(MINI), &code, None, Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(reused.kind(), Some(ErrorKind::InvalidCode));
}

#[tokio::test]
async fn phone_number_accepts_a_numeric_country_code() {
    let h = start_with(SimConfig {
        phone_country_code_as_number: true,
        ..SimConfig::demo()
    })
    .await;
    let code = Code::new(h.sim.mint_phone_code(MINI, "bob"));
    let phone = h
        .manager()
        .phone_number(&app(MINI), &code, None, Deadline::none())
        .await
        .unwrap();
    assert_eq!(phone.country_code, "86");
}

#[tokio::test]
async fn phone_number_checks_the_openid_when_given() {
    let h = start().await;
    let manager = h.manager();
    let code = Code::new(h.sim.mint_phone_code(MINI, "alice"));
    let bob = wechat_client::OpenId::new(h.sim.openid(MINI, "bob")).unwrap();
    let error = manager
        .phone_number(&app(MINI), &code, Some(&bob), Deadline::none())
        .await
        .unwrap_err();
    assert_eq!(error.kind(), Some(ErrorKind::InvalidOpenId));
}

#[tokio::test]
async fn check_session_tells_current_from_replaced_session_keys() {
    let h = start().await;
    let manager = h.manager();
    let app_creds = creds(MINI, MINI_SECRET);
    let first = h
        .client
        .code_to_session(
            &app_creds,
            &Code::new(h.sim.mint_login_code(MINI, "alice")),
            Deadline::none(),
        )
        .await
        .unwrap();
    assert!(
        manager
            .check_session(
                &app(MINI),
                &first.openid,
                &first.session_key,
                Deadline::none()
            )
            .await
            .unwrap()
    );

    let second = h
        .client
        .code_to_session(
            &app_creds,
            &Code::new(h.sim.mint_login_code(MINI, "alice")),
            Deadline::none(),
        )
        .await
        .unwrap();
    assert!(
        !manager
            .check_session(
                &app(MINI),
                &first.openid,
                &first.session_key,
                Deadline::none()
            )
            .await
            .unwrap()
    );
    assert!(
        manager
            .check_session(
                &app(MINI),
                &second.openid,
                &second.session_key,
                Deadline::none()
            )
            .await
            .unwrap()
    );
    let garbage = SessionKey::new("AAAAAAAAAAAAAAAAAAAAAA==");
    assert!(
        !manager
            .check_session(&app(MINI), &first.openid, &garbage, Deadline::none())
            .await
            .unwrap()
    );
}
