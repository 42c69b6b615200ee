//! The contract's order of checks, RPC by RPC: caller key, permission, field
//! formats, app_id resolution, the records the request names, and only then
//! WeChat calls and writes. Each RPC gets requests with several faults, one
//! fewer at each step, and must report the first fault in that order; no
//! refused request may spend a code or reach WeChat.
#![allow(clippy::unwrap_used)]

use e2e::callers::spawn_with_permission_sets;
use e2e::*;
use server::pb::bind_user_request::{Account, Proof};
use server::pb::get_profile_request::Lookup;
use server::pb::revoke_session_request::Target;
use server::pb::{
    BindUserRequest, GetAppAccessTokenRequest, GetPhoneNumberRequest, GetProfileRequest,
    MiniProgramCode, MiniProgramLoginRequest, RefreshTokenRequest, RevokeSessionRequest,
    UnbindUserRequest, VerifyTokenRequest, WebLoginRequest, WechatIdentity,
};
use tonic::{Response, Status};
use wechat_sim::Endpoint;

/// A well-formed app_id that names no configured app.
const NO_APP: &str = "wxd0000000000000ff";
/// Every permission but `core`.
const WITHOUT_CORE: &[&str] = &["import", "admin"];

macro_rules! spawn_callers {
    ($backend:expr) => {
        match spawn_with_permission_sets($backend).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// The answer as `OK`, `REASON`, or `FIELD_INVALID field`.
fn outcome<T>(result: Result<Response<T>, Status>) -> String {
    match result {
        Ok(_) => "OK".to_owned(),
        Err(status) => match (reason(&status), bad_field(&status)) {
            (Some(reason), Some(field)) => format!("{reason} {field}"),
            (Some(reason), None) => reason,
            (None, _) => format!("{:?} without details", status.code()),
        },
    }
}

/// Collects every step's mismatch, so one run shows the whole order.
#[derive(Default)]
struct Steps(Vec<String>);

impl Steps {
    fn expect<T>(&mut self, step: &str, result: Result<Response<T>, Status>, want: &str) {
        let got = outcome(result);
        if got != want {
            self.0.push(format!("{step}: want {want}, got {got}"));
        }
    }

    fn assert_all(self) {
        assert!(self.0.is_empty(), "\n{}", self.0.join("\n"));
    }
}

fn unknown_user() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn identity(app_id: &str, openid: &str) -> WechatIdentity {
    WechatIdentity {
        app_id: app_id.into(),
        openid: openid.into(),
    }
}

async fn mini_program_login_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |app_id: &str, code: &str| MiniProgramLoginRequest {
        app_id: app_id.into(),
        code: code.into(),
    };
    let code = app.sim.mint_login_code(MINI, "olga");
    let mut steps = Steps::default();
    let all_wrong = || request("wx bad", "");
    steps.expect(
        "no key",
        app.client_with(None).mini_program_login(all_wrong()).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE)
            .mini_program_login(all_wrong())
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "malformed app_id and code",
        client.mini_program_login(all_wrong()).await,
        "FIELD_INVALID app_id",
    );
    steps.expect(
        "unknown app, empty code",
        client.mini_program_login(request(NO_APP, "")).await,
        "FIELD_INVALID code",
    );
    steps.expect(
        "unknown app",
        client.mini_program_login(request(NO_APP, &code)).await,
        "APP_NOT_FOUND",
    );
    assert_eq!(app.sim.calls(Endpoint::JsCode2Session), 0);
    steps.expect(
        "the same code, now right",
        client.mini_program_login(request(MINI, &code)).await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

async fn get_phone_number_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |app_id: &str, code: &str, user_id: &str| GetPhoneNumberRequest {
        app_id: app_id.into(),
        code: code.into(),
        user_id: user_id.into(),
    };
    let code = app.sim.mint_phone_code(MINI, "olga");
    let mut steps = Steps::default();
    let all_wrong = || request("wx bad", "", "not-a-uuid");
    steps.expect(
        "no key",
        app.client_with(None).get_phone_number(all_wrong()).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE)
            .get_phone_number(all_wrong())
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "malformed app_id, code and user_id",
        client.get_phone_number(all_wrong()).await,
        "FIELD_INVALID app_id",
    );
    steps.expect(
        "malformed code and user_id",
        client
            .get_phone_number(request(NO_APP, "", "not-a-uuid"))
            .await,
        "FIELD_INVALID code",
    );
    steps.expect(
        "malformed user_id",
        client
            .get_phone_number(request(NO_APP, &code, "not-a-uuid"))
            .await,
        "FIELD_INVALID user_id",
    );
    steps.expect(
        "unknown app and user",
        client
            .get_phone_number(request(NO_APP, &code, &unknown_user()))
            .await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "unknown user",
        client
            .get_phone_number(request(MINI, &code, &unknown_user()))
            .await,
        "USER_NOT_FOUND",
    );
    assert_eq!(app.sim.calls(Endpoint::GetUserPhoneNumber), 0);
    steps.expect(
        "the same code, now right",
        client.get_phone_number(request(MINI, &code, "")).await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

async fn bind_user_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let bind = |account: Account, proof: Proof| BindUserRequest {
        account: Some(account),
        proof: Some(proof),
        replace_existing: false,
    };
    let user = |id: &str| Account::UserId(id.into());
    let import = |app_id: &str, openid: &str| Proof::Identity(identity(app_id, openid));
    let code_proof = |app_id: &str, code: &str| {
        Proof::MiniProgramCode(MiniProgramCode {
            app_id: app_id.into(),
            code: code.into(),
        })
    };
    let code = app.sim.mint_login_code(MINI, "pavel");
    let mut steps = Steps::default();

    // An `identity` proof: the import permission comes before every field.
    let all_wrong = || bind(user("not-a-uuid"), import("wx bad", "o bad"));
    steps.expect(
        "no key",
        app.client_with(None).bind_user(all_wrong()).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "identity proof without import",
        app.holding(&["core", "admin"]).bind_user(all_wrong()).await,
        "CALLER_NOT_PERMITTED",
    );
    steps.expect(
        "identity proof without core",
        app.holding(WITHOUT_CORE).bind_user(all_wrong()).await,
        "CALLER_NOT_PERMITTED",
    );
    let mut importer = app.admin();
    steps.expect(
        "malformed account and identity",
        importer.bind_user(all_wrong()).await,
        "FIELD_INVALID user_id",
    );
    steps.expect(
        "malformed identity, unknown user",
        importer
            .bind_user(bind(user(&unknown_user()), import(NO_APP, "o bad")))
            .await,
        "FIELD_INVALID identity.openid",
    );
    steps.expect(
        "identity of an unknown app, unknown user",
        importer
            .bind_user(bind(user(&unknown_user()), import(NO_APP, "oImported1")))
            .await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "unknown user",
        importer
            .bind_user(bind(user(&unknown_user()), import(MINI, "oImported1")))
            .await,
        "USER_NOT_FOUND",
    );

    // A `mini_program_code` proof: the code is sent only after every check.
    let mut client = app.client();
    steps.expect(
        "code proof without core",
        app.holding(WITHOUT_CORE)
            .bind_user(bind(user("not-a-uuid"), code_proof("wx bad", "")))
            .await,
        "CALLER_NOT_PERMITTED",
    );
    steps.expect(
        "empty code, unknown app and user",
        client
            .bind_user(bind(user(&unknown_user()), code_proof(NO_APP, "")))
            .await,
        "FIELD_INVALID mini_program_code.code",
    );
    steps.expect(
        "code for an unknown app, unknown user",
        client
            .bind_user(bind(user(&unknown_user()), code_proof(NO_APP, &code)))
            .await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "code for an Official Account",
        client
            .bind_user(bind(user(&unknown_user()), code_proof(OFFICIAL, &code)))
            .await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "code, unknown user",
        client
            .bind_user(bind(user(&unknown_user()), code_proof(MINI, &code)))
            .await,
        "USER_NOT_FOUND",
    );
    assert_eq!(app.sim.calls(Endpoint::JsCode2Session), 0);

    // A `ticket` proof: the user is looked up before the ticket is spent.
    steps.expect(
        "malformed ticket, unknown user",
        client
            .bind_user(bind(
                user(&unknown_user()),
                Proof::Ticket("no such ticket".into()),
            ))
            .await,
        "FIELD_INVALID ticket",
    );
    steps.expect(
        "unknown ticket, unknown user",
        client
            .bind_user(bind(
                user(&unknown_user()),
                Proof::Ticket("no-such-ticket".into()),
            ))
            .await,
        "USER_NOT_FOUND",
    );
    steps.expect(
        "unknown ticket",
        client
            .bind_user(bind(
                Account::ExternalId("crm-1".into()),
                Proof::Ticket("no-such-ticket".into()),
            ))
            .await,
        "TICKET_INVALID ticket",
    );
    steps.expect(
        "the same code, now right",
        client
            .bind_user(bind(
                Account::ExternalId("crm-1".into()),
                code_proof(MINI, &code),
            ))
            .await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

async fn get_profile_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let by_identity = |app_id: &str, openid: &str| GetProfileRequest {
        lookup: Some(Lookup::Identity(identity(app_id, openid))),
        refresh_from_wechat: false,
    };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None)
            .get_profile(by_identity("wx bad", "o bad"))
            .await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE)
            .get_profile(by_identity("wx bad", "o bad"))
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "no lookup",
        client
            .get_profile(GetProfileRequest {
                lookup: None,
                refresh_from_wechat: true,
            })
            .await,
        "FIELD_INVALID lookup",
    );
    steps.expect(
        "malformed openid of an unknown app",
        client.get_profile(by_identity(NO_APP, "o bad")).await,
        "FIELD_INVALID identity.openid",
    );
    steps.expect(
        "identity of an unknown app",
        client.get_profile(by_identity(NO_APP, "oNobody")).await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "unknown identity",
        client.get_profile(by_identity(MINI, "oNobody")).await,
        "IDENTITY_NOT_FOUND",
    );
    steps.expect(
        "unknown identity of a website app",
        client.get_profile(by_identity(WEBSITE, "oNobody")).await,
        "IDENTITY_NOT_FOUND",
    );
    steps.expect(
        "unknown user, refreshed from WeChat",
        client
            .get_profile(GetProfileRequest {
                lookup: Some(Lookup::UserId(unknown_user())),
                refresh_from_wechat: true,
            })
            .await,
        "USER_NOT_FOUND",
    );
    assert_eq!(app.sim.calls(Endpoint::SnsUserInfo), 0);
    steps.assert_all();
    app.stop().await;
}

async fn refresh_token_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |token: &str| RefreshTokenRequest {
        refresh_token: token.into(),
    };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None).refresh_token(request("")).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE).refresh_token(request("")).await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "empty token",
        client.refresh_token(request("")).await,
        "FIELD_INVALID refresh_token",
    );
    steps.expect(
        "unknown token",
        client.refresh_token(request("no-such-token")).await,
        "REFRESH_TOKEN_INVALID",
    );
    steps.assert_all();
    app.stop().await;
}

async fn web_login_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |ticket: &str| WebLoginRequest {
        ticket: ticket.into(),
    };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None).web_login(request("")).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE).web_login(request("")).await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "empty ticket",
        client.web_login(request("")).await,
        "FIELD_INVALID ticket",
    );
    steps.expect(
        "unknown ticket",
        client.web_login(request("no-such-ticket")).await,
        "TICKET_INVALID ticket",
    );
    steps.assert_all();
    app.stop().await;
}

async fn verify_token_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |token: &str| VerifyTokenRequest {
        access_token: token.into(),
    };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None).verify_token(request("")).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE).verify_token(request("")).await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "empty token",
        client.verify_token(request("")).await,
        "FIELD_INVALID access_token",
    );
    steps.expect(
        "a token of nobody",
        client.verify_token(request("not a jwt")).await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

async fn revoke_session_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |target: Option<Target>| RevokeSessionRequest { target };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None).revoke_session(request(None)).await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE)
            .revoke_session(request(None))
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "no target",
        client.revoke_session(request(None)).await,
        "FIELD_INVALID target",
    );
    steps.expect(
        "malformed session_id",
        client
            .revoke_session(request(Some(Target::SessionId("no such id".into()))))
            .await,
        "FIELD_INVALID session_id",
    );
    steps.expect(
        "unknown session_id",
        client
            .revoke_session(request(Some(Target::SessionId(unknown_user()))))
            .await,
        "SESSION_NOT_FOUND",
    );
    steps.expect(
        "empty refresh_token",
        client
            .revoke_session(request(Some(Target::RefreshToken(String::new()))))
            .await,
        "FIELD_INVALID refresh_token",
    );
    steps.expect(
        "unknown refresh_token",
        client
            .revoke_session(request(Some(Target::RefreshToken("no-such-token".into()))))
            .await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

async fn unbind_user_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |app_id: &str, openid: &str| UnbindUserRequest {
        identity: Some(identity(app_id, openid)),
    };
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None)
            .unbind_user(request("wx bad", "o bad"))
            .await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without core",
        app.holding(WITHOUT_CORE)
            .unbind_user(request("wx bad", "o bad"))
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut client = app.client();
    steps.expect(
        "no identity",
        client
            .unbind_user(UnbindUserRequest { identity: None })
            .await,
        "FIELD_INVALID identity",
    );
    steps.expect(
        "malformed openid of an unknown app",
        client.unbind_user(request(NO_APP, "o bad")).await,
        "FIELD_INVALID identity.openid",
    );
    steps.expect(
        "identity of an unknown app",
        client.unbind_user(request(NO_APP, "oNobody")).await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "unknown identity",
        client.unbind_user(request(MINI, "oNobody")).await,
        "IDENTITY_NOT_FOUND",
    );
    steps.assert_all();
    app.stop().await;
}

async fn get_app_access_token_checks_in_the_contracts_order(backend: Backend) {
    let app = spawn_callers!(backend);
    let request = |app_id: &str| GetAppAccessTokenRequest {
        app_id: app_id.into(),
    };
    let fetches = || app.sim.calls(Endpoint::StableToken) + app.sim.calls(Endpoint::Token);
    let fetched_before = fetches();
    let mut steps = Steps::default();
    steps.expect(
        "no key",
        app.client_with(None)
            .get_app_access_token(request(""))
            .await,
        "UNAUTHENTICATED_CALLER",
    );
    steps.expect(
        "without admin",
        app.holding(&["core", "import"])
            .get_app_access_token(request(""))
            .await,
        "CALLER_NOT_PERMITTED",
    );
    let mut admin = app.holding(&["admin"]);
    steps.expect(
        "empty app_id",
        admin.get_app_access_token(request("")).await,
        "FIELD_INVALID app_id",
    );
    steps.expect(
        "malformed app_id",
        admin.get_app_access_token(request("wx bad")).await,
        "FIELD_INVALID app_id",
    );
    steps.expect(
        "unknown app",
        admin.get_app_access_token(request(NO_APP)).await,
        "APP_NOT_FOUND",
    );
    steps.expect(
        "a website app, which has no such token",
        admin.get_app_access_token(request(WEBSITE)).await,
        "APP_NOT_FOUND",
    );
    assert_eq!(fetches(), fetched_before, "no refused call fetched a token");
    steps.expect(
        "an admin-only caller, right",
        admin.get_app_access_token(request(MINI)).await,
        "OK",
    );
    steps.assert_all();
    app.stop().await;
}

on_both_backends!(
    mini_program_login_checks_in_the_contracts_order,
    get_phone_number_checks_in_the_contracts_order,
    bind_user_checks_in_the_contracts_order,
    get_profile_checks_in_the_contracts_order,
    refresh_token_checks_in_the_contracts_order,
    web_login_checks_in_the_contracts_order,
    verify_token_checks_in_the_contracts_order,
    revoke_session_checks_in_the_contracts_order,
    unbind_user_checks_in_the_contracts_order,
    get_app_access_token_checks_in_the_contracts_order,
);
