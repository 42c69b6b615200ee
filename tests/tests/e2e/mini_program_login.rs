//! MiniProgramLogin and GetPhoneNumber through the real service.
#![allow(clippy::unwrap_used)]

use e2e::*;
use server::pb::{
    GetPhoneNumberRequest, GetProfileRequest, MiniProgramLoginRequest, get_profile_request::Lookup,
};
use tonic::Code;
use wechat_sim::{Endpoint, Fault};

fn login(app_id: &str, code: String) -> MiniProgramLoginRequest {
    MiniProgramLoginRequest {
        app_id: app_id.into(),
        code,
    }
}

async fn a_first_login_creates_a_user_and_the_next_login_finds_it(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let first = client
        .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "alice")))
        .await
        .unwrap()
        .into_inner();
    assert!(first.is_new_user);
    assert_eq!(first.openid, app.sim.openid(MINI, "alice"));
    assert_eq!(Some(first.unionid.clone()), app.sim.unionid(MINI, "alice"));
    let session = first.session.unwrap();
    assert!(!session.access_token.is_empty() && !session.refresh_token.is_empty());
    assert!(
        session.access_token_expires_at.is_some() && session.refresh_token_expires_at.is_some()
    );

    let again = client
        .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "alice")))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.is_new_user);
    assert_eq!(again.user_id, first.user_id);
    assert_ne!(
        again.session.unwrap().session_id,
        session.session_id,
        "a session per login"
    );
    app.stop().await;
}

async fn an_app_without_open_platform_gives_a_separate_user_and_no_unionid(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let mini = client
        .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "bob")))
        .await
        .unwrap()
        .into_inner();
    // The lone mini program has no unionid: a second user.
    let lone = client
        .mini_program_login(login(LONE_MINI, app.sim.mint_login_code(LONE_MINI, "bob")))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(lone.user_id, mini.user_id);
    assert!(lone.unionid.is_empty());
    app.stop().await;
}

async fn a_replayed_code_is_refused_without_calling_wechat(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let code = app.sim.mint_login_code(MINI, "alice");
    client
        .mini_program_login(login(MINI, code.clone()))
        .await
        .unwrap();
    let status = client
        .mini_program_login(login(MINI, code))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_deref()),
        (Code::InvalidArgument, Some("WECHAT_CODE_USED"))
    );
    assert_eq!(bad_field(&status).as_deref(), Some("code"));
    assert_eq!(app.sim.calls(Endpoint::JsCode2Session), 1);
    app.stop().await;
}

async fn a_code_wechat_spent_in_a_system_error_answers_unavailable_and_is_not_resent(
    backend: Backend,
) {
    let app = spawn!(backend);
    let mut client = app.client();
    // Every attempt fails with -1, and the first one consumes the code.
    app.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError { consume_code: true },
        1,
    );
    app.sim.inject(
        Endpoint::JsCode2Session,
        Fault::SystemError {
            consume_code: false,
        },
        5,
    );
    let code = app.sim.mint_login_code(MINI, "alice");
    let status = client
        .mini_program_login(login(MINI, code.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_deref()),
        (Code::Unavailable, Some("WECHAT_UNAVAILABLE"))
    );
    let calls = app.sim.calls(Endpoint::JsCode2Session);
    // The caller retries with the same code: the service knows it may be spent.
    let status = client
        .mini_program_login(login(MINI, code))
        .await
        .unwrap_err();
    assert_eq!(
        (status.code(), reason(&status).as_deref()),
        (Code::Unavailable, Some("WECHAT_UNAVAILABLE"))
    );
    assert_eq!(
        app.sim.calls(Endpoint::JsCode2Session),
        calls,
        "no second exchange of a possibly spent code"
    );
    app.stop().await;
}

async fn wechat_errors_map_to_the_contracts_codes(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let cases = [
        (
            Fault::Errcode { errcode: 40029 },
            Code::InvalidArgument,
            "WECHAT_CODE_INVALID",
        ),
        (
            Fault::Errcode { errcode: 45011 },
            Code::ResourceExhausted,
            "WECHAT_RATE_LIMITED",
        ),
        (
            Fault::Errcode { errcode: 40125 },
            Code::FailedPrecondition,
            "WECHAT_APP_MISCONFIGURED",
        ),
        (
            Fault::Errcode { errcode: 40226 },
            Code::PermissionDenied,
            "WECHAT_USER_BLOCKED",
        ),
        (
            Fault::HttpStatus { status: 502 },
            Code::Unavailable,
            "WECHAT_UNAVAILABLE",
        ),
    ];
    for (fault, code, expected) in cases {
        let times = if matches!(fault, Fault::HttpStatus { .. }) {
            5
        } else {
            1
        };
        app.sim.inject(Endpoint::JsCode2Session, fault, times);
        let status = client
            .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "carol")))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_deref()),
            (code, Some(expected))
        );
    }
    app.stop().await;
}

async fn bad_input_is_refused_before_wechat_naming_the_field(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    for (request, field) in [
        (login(MINI, String::new()), "code"),
        (login(MINI, "has space".into()), "code"),
        (login("wx bad", "c".into()), "app_id"),
    ] {
        let status = client.mini_program_login(request).await.unwrap_err();
        assert_eq!(
            (status.code(), reason(&status).as_deref()),
            (Code::InvalidArgument, Some("FIELD_INVALID"))
        );
        assert_eq!(bad_field(&status).as_deref(), Some(field));
    }
    let ambiguous = client
        .mini_program_login(login("", "c".into()))
        .await
        .unwrap_err();
    assert_eq!(
        reason(&ambiguous).as_deref(),
        Some("APP_AMBIGUOUS"),
        "two mini programs are configured"
    );
    let unknown = client
        .mini_program_login(login(OFFICIAL, "c".into()))
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), reason(&unknown).as_deref()),
        (Code::NotFound, Some("APP_NOT_FOUND"))
    );
    assert_eq!(app.sim.calls(Endpoint::JsCode2Session), 0);
    app.stop().await;
}

async fn the_phone_number_is_returned_and_saved_on_the_user(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let user = client
        .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "dave")))
        .await
        .unwrap()
        .into_inner();
    let expected = app.sim.user("dave").phone.unwrap();
    let phone = client
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: app.sim.mint_phone_code(MINI, "dave"),
            user_id: user.user_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (
            phone.pure_phone_number.as_str(),
            phone.country_code.as_str()
        ),
        (expected.pure_phone_number.as_str(), "86")
    );
    let profile = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(user.user_id)),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.phone.unwrap().phone_number, expected.phone_number);

    let unknown_user = client
        .get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: app.sim.mint_phone_code(MINI, "dave"),
            user_id: "0190c1e2-0000-7000-8000-000000000001".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&unknown_user).as_deref(), Some("USER_NOT_FOUND"));
    assert_eq!(
        app.sim.calls(Endpoint::GetUserPhoneNumber),
        1,
        "the code of an unknown user is not spent"
    );

    let phone_code = app.sim.mint_phone_code(MINI, "dave");
    let ask = |code: &str| GetPhoneNumberRequest {
        app_id: MINI.into(),
        code: code.to_owned(),
        user_id: String::new(),
    };
    client.get_phone_number(ask(&phone_code)).await.unwrap();
    let replay = client.get_phone_number(ask(&phone_code)).await.unwrap_err();
    assert_eq!(
        (replay.code(), reason(&replay).as_deref()),
        (Code::InvalidArgument, Some("WECHAT_CODE_USED"))
    );
    assert_eq!(
        app.sim.calls(Endpoint::GetUserPhoneNumber),
        2,
        "a replayed phone code is refused without calling WeChat"
    );
    app.stop().await;
}

async fn a_phone_code_is_not_spent_when_the_app_token_could_not_be_fetched(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    // The app token is fetched on the first phone call; WeChat's token
    // endpoint fails every attempt of it.
    app.sim.inject(
        Endpoint::StableToken,
        wechat_sim::Fault::HttpStatus { status: 502 },
        100,
    );
    let phone_code = app.sim.mint_phone_code(MINI, "erin");
    let ask = || GetPhoneNumberRequest {
        app_id: MINI.into(),
        code: phone_code.clone(),
        user_id: String::new(),
    };
    let failed = client.get_phone_number(ask()).await.unwrap_err();
    assert_eq!(failed.code(), Code::Unavailable, "{failed:?}");
    assert_eq!(app.sim.calls(Endpoint::GetUserPhoneNumber), 0);

    app.sim.clear_faults();
    let phone = client.get_phone_number(ask()).await.unwrap().into_inner();
    assert_eq!(
        phone.pure_phone_number,
        app.sim.user("erin").phone.unwrap().pure_phone_number,
        "the code WeChat never saw still works"
    );
    app.stop().await;
}

async fn a_call_the_caller_abandons_still_finishes_its_writes(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let user = client
        .mini_program_login(login(MINI, app.sim.mint_login_code(MINI, "fay")))
        .await
        .unwrap()
        .into_inner();
    // WeChat answers slowly; the caller gives up (and resets the stream)
    // while the phone call is in flight.
    app.sim.inject(
        Endpoint::GetUserPhoneNumber,
        Fault::Delay { millis: 300 },
        1,
    );
    let abandoned = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        client.get_phone_number(GetPhoneNumberRequest {
            app_id: MINI.into(),
            code: app.sim.mint_phone_code(MINI, "fay"),
            user_id: user.user_id.clone(),
        }),
    )
    .await;
    assert!(abandoned.is_err(), "the caller left before the answer");
    // WeChat did spend the code; the number it answered is kept.
    let expected = app.sim.user("fay").phone.unwrap().phone_number;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let profile = client
            .get_profile(GetProfileRequest {
                lookup: Some(Lookup::UserId(user.user_id.clone())),
                refresh_from_wechat: false,
            })
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap();
        if profile.phone.map(|p| p.phone_number) == Some(expected.clone()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned call never saved the phone number WeChat gave it"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.stop().await;
}

on_both_backends!(
    a_call_the_caller_abandons_still_finishes_its_writes,
    a_phone_code_is_not_spent_when_the_app_token_could_not_be_fetched,
    a_first_login_creates_a_user_and_the_next_login_finds_it,
    an_app_without_open_platform_gives_a_separate_user_and_no_unionid,
    a_replayed_code_is_refused_without_calling_wechat,
    a_code_wechat_spent_in_a_system_error_answers_unavailable_and_is_not_resent,
    wechat_errors_map_to_the_contracts_codes,
    bad_input_is_refused_before_wechat_naming_the_field,
    the_phone_number_is_returned_and_saved_on_the_user,
);
