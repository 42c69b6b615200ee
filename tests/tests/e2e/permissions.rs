//! Every RPC, and every request variant with a row of its own in
//! `server::permissions::TABLE`, called by a caller holding each set of
//! permissions: the answer is CALLER_NOT_PERMITTED exactly where the table
//! says, and elsewhere the FIELD_INVALID each request was built to have, which
//! shows the permission was checked before the fields.
#![allow(clippy::unwrap_used)]

use e2e::callers::{PERMISSION_SETS, caller_name, spawn_with_permission_sets};
use e2e::*;
use server::pb::bind_user_request::{Account, Proof};
use server::pb::revoke_session_request::Target;
use server::pb::{
    BindUserRequest, GetAppAccessTokenRequest, GetPhoneNumberRequest, GetProfileRequest,
    MiniProgramCode, MiniProgramLoginRequest, RefreshTokenRequest, RevokeSessionRequest,
    UnbindUserRequest, VerifyTokenRequest, WebLoginRequest, WechatIdentity,
};
use server::permissions::{TABLE, contract_rpcs, needs};
use tonic::{Code, Status};

/// Calls `rpc` with a request of `variant` whose fields are malformed.
async fn call_with_bad_fields(
    client: &mut Client,
    rpc: &str,
    variant: Option<&str>,
) -> Result<(), Status> {
    let bind = |proof: Option<Proof>| BindUserRequest {
        account: Some(Account::UserId("not-a-uuid".into())),
        proof,
        replace_existing: false,
    };
    let revoke = |target: Option<Target>| RevokeSessionRequest { target };
    match (rpc, variant) {
        ("MiniProgramLogin", None) => client
            .mini_program_login(MiniProgramLoginRequest {
                app_id: MINI.into(),
                code: String::new(),
            })
            .await
            .map(drop),
        ("GetPhoneNumber", None) => client
            .get_phone_number(GetPhoneNumberRequest {
                app_id: MINI.into(),
                code: String::new(),
                user_id: String::new(),
            })
            .await
            .map(drop),
        ("BindUser", None) => client.bind_user(bind(None)).await.map(drop),
        ("BindUser", Some("ticket")) => client
            .bind_user(bind(Some(Proof::Ticket("no-such-ticket".into()))))
            .await
            .map(drop),
        ("BindUser", Some("mini_program_code")) => client
            .bind_user(bind(Some(Proof::MiniProgramCode(MiniProgramCode {
                app_id: MINI.into(),
                code: "a-code".into(),
            }))))
            .await
            .map(drop),
        ("BindUser", Some("identity")) => client
            .bind_user(bind(Some(Proof::Identity(WechatIdentity {
                app_id: MINI.into(),
                openid: "oImported".into(),
            }))))
            .await
            .map(drop),
        ("GetProfile", None) => client
            .get_profile(GetProfileRequest {
                lookup: None,
                refresh_from_wechat: false,
            })
            .await
            .map(drop),
        ("RefreshToken", None) => client
            .refresh_token(RefreshTokenRequest {
                refresh_token: String::new(),
            })
            .await
            .map(drop),
        ("WebLogin", None) => client
            .web_login(WebLoginRequest {
                ticket: String::new(),
            })
            .await
            .map(drop),
        ("VerifyToken", None) => client
            .verify_token(VerifyTokenRequest {
                access_token: String::new(),
            })
            .await
            .map(drop),
        ("RevokeSession", None) => client.revoke_session(revoke(None)).await.map(drop),
        ("RevokeSession", Some("session_id")) => client
            .revoke_session(revoke(Some(Target::SessionId(String::new()))))
            .await
            .map(drop),
        ("RevokeSession", Some("refresh_token")) => client
            .revoke_session(revoke(Some(Target::RefreshToken(String::new()))))
            .await
            .map(drop),
        ("UnbindUser", None) => client
            .unbind_user(UnbindUserRequest { identity: None })
            .await
            .map(drop),
        ("GetAppAccessToken", None) => client
            .get_app_access_token(GetAppAccessTokenRequest {
                app_id: String::new(),
            })
            .await
            .map(drop),
        _ => panic!("add a request for {rpc} {variant:?} to this test"),
    }
}

async fn every_rpc_answers_caller_not_permitted_exactly_where_the_table_says(backend: Backend) {
    // The table covers the contract, so a new RPC without a row fails here.
    for (rpc, _) in contract_rpcs().unwrap() {
        assert!(needs(&rpc, None).is_some(), "{rpc} has no permission row");
    }
    let Some(app) = spawn_with_permission_sets(backend).await else {
        return;
    };
    let mut wrong = Vec::new();
    for rule in TABLE {
        for held in PERMISSION_SETS {
            let permitted = rule.needs.iter().all(|p| held.contains(&p.as_str()));
            let want = if permitted {
                (Code::InvalidArgument, "FIELD_INVALID")
            } else {
                (Code::PermissionDenied, "CALLER_NOT_PERMITTED")
            };
            let answer = call_with_bad_fields(&mut app.holding(held), rule.rpc, rule.variant).await;
            let got = match &answer {
                Ok(()) => (Code::Ok, "OK".to_owned()),
                Err(status) => (status.code(), reason(status).unwrap_or_default()),
            };
            if (got.0, got.1.as_str()) != want {
                wrong.push(format!(
                    "{} {:?} by {}: want {want:?}, got {got:?}",
                    rule.rpc,
                    rule.variant,
                    caller_name(held)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
    app.stop().await;
}

on_both_backends!(every_rpc_answers_caller_not_permitted_exactly_where_the_table_says);
