//! BindUser, UnbindUser and GetProfile through the real service.
#![allow(clippy::unwrap_used)]

use e2e::*;
use server::pb::bind_user_request::{Account, Proof};
use server::pb::get_profile_request::Lookup;
use server::pb::{
    BindUserRequest, GetProfileRequest, MiniProgramCode, MiniProgramLoginRequest,
    UnbindUserRequest, WechatIdentity,
};
use tonic::Code;

fn bind(account: Account, proof: Proof, replace_existing: bool) -> BindUserRequest {
    BindUserRequest {
        account: Some(account),
        proof: Some(proof),
        replace_existing,
    }
}

fn code_proof(app: &TestApp, user: &str) -> Proof {
    Proof::MiniProgramCode(MiniProgramCode {
        app_id: MINI.into(),
        code: app.sim.mint_login_code(MINI, user),
    })
}

async fn binding_gives_the_identitys_user_the_external_id_and_refuses_a_second_one(
    backend: Backend,
) {
    let app = spawn!(backend);
    let mut client = app.client();
    let profile = client
        .bind_user(bind(
            Account::ExternalId("crm-42".into()),
            code_proof(&app, "frank"),
            false,
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.external_id, "crm-42");
    assert_eq!(profile.identities.len(), 1);
    let found = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::ExternalId("crm-42".into())),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(found.user_id, profile.user_id);

    let conflict = client
        .bind_user(bind(
            Account::ExternalId("crm-43".into()),
            code_proof(&app, "frank"),
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (conflict.code(), reason(&conflict).as_deref()),
        (Code::AlreadyExists, Some("IDENTITY_ALREADY_BOUND"))
    );
    let moved = client
        .bind_user(bind(
            Account::ExternalId("crm-43".into()),
            code_proof(&app, "frank"),
            true,
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(moved.external_id, "crm-43");
    assert_ne!(
        moved.user_id, profile.user_id,
        "replace_existing moves the identity to a new user taking crm-43"
    );
    app.stop().await;
}

async fn importing_an_identity_needs_the_import_permission(backend: Backend) {
    let app = spawn!(backend);
    let identity = WechatIdentity {
        app_id: OFFICIAL.into(),
        openid: "oImported0000000000000000001".into(),
    };
    let request = || {
        bind(
            Account::ExternalId("crm-7".into()),
            Proof::Identity(identity.clone()),
            false,
        )
    };
    let denied = app.client().bind_user(request()).await.unwrap_err();
    assert_eq!(
        (denied.code(), reason(&denied).as_deref()),
        (Code::PermissionDenied, Some("CALLER_NOT_PERMITTED"))
    );
    let profile = app
        .admin()
        .bind_user(request())
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.identities[0].openid, identity.openid);

    let unbound = app
        .admin()
        .unbind_user(UnbindUserRequest {
            identity: Some(identity.clone()),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert!(unbound.identities.is_empty());
    let again = app
        .admin()
        .unbind_user(UnbindUserRequest {
            identity: Some(identity),
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&again).as_deref(), Some("IDENTITY_NOT_FOUND"));
    app.stop().await;
}

async fn lookups_of_unknown_records_and_missing_oneofs_are_told_apart(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let login = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: MINI.into(),
            code: app.sim.mint_login_code(MINI, "gina"),
        })
        .await
        .unwrap()
        .into_inner();
    let by_unionid = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::Unionid(login.unionid)),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(by_unionid.user_id, login.user_id);
    let no_web = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(login.user_id)),
            refresh_from_wechat: true,
        })
        .await
        .unwrap_err();
    assert_eq!(
        (no_web.code(), reason(&no_web).as_deref()),
        (Code::FailedPrecondition, Some("NO_WEB_AUTHORIZATION"))
    );

    let unknown_user = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::ExternalId("nobody".into())),
            refresh_from_wechat: false,
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&unknown_user).as_deref(), Some("USER_NOT_FOUND"));
    let unknown_identity = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::Identity(WechatIdentity {
                app_id: MINI.into(),
                openid: "oNobody".into(),
            })),
            refresh_from_wechat: false,
        })
        .await
        .unwrap_err();
    assert_eq!(
        reason(&unknown_identity).as_deref(),
        Some("IDENTITY_NOT_FOUND")
    );
    let missing = client
        .get_profile(GetProfileRequest {
            lookup: None,
            refresh_from_wechat: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_field(&missing).as_deref(), Some("lookup"));
    let bad_ticket = client
        .bind_user(bind(
            Account::ExternalId("x".into()),
            Proof::Ticket("no-such-ticket".into()),
            false,
        ))
        .await
        .unwrap_err();
    assert_eq!(
        (bad_ticket.code(), reason(&bad_ticket).as_deref()),
        (Code::InvalidArgument, Some("TICKET_INVALID"))
    );
    app.stop().await;
}

async fn an_external_id_held_by_another_user_is_taken_unless_replace_existing(backend: Backend) {
    let app = spawn!(backend);
    let mut client = app.client();
    let holder = client
        .bind_user(bind(
            Account::ExternalId("crm-held".into()),
            code_proof(&app, "hana"),
            false,
        ))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    let ivan = client
        .mini_program_login(MiniProgramLoginRequest {
            app_id: LONE_MINI.into(),
            code: app.sim.mint_login_code(LONE_MINI, "ivan"),
        })
        .await
        .unwrap()
        .into_inner();
    let proof = || {
        Proof::MiniProgramCode(MiniProgramCode {
            app_id: LONE_MINI.into(),
            code: app.sim.mint_login_code(LONE_MINI, "ivan"),
        })
    };
    let taken = client
        .bind_user(bind(Account::ExternalId("crm-held".into()), proof(), false))
        .await
        .unwrap_err();
    assert_eq!(
        (taken.code(), reason(&taken).as_deref()),
        (Code::AlreadyExists, Some("EXTERNAL_ID_TAKEN"))
    );
    let moved = client
        .bind_user(bind(Account::ExternalId("crm-held".into()), proof(), true))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(
        moved.user_id, holder.user_id,
        "the identity moved to the holder of crm-held"
    );
    assert_eq!(moved.identities.len(), 2);
    let left = client
        .get_profile(GetProfileRequest {
            lookup: Some(Lookup::UserId(ivan.user_id)),
            refresh_from_wechat: false,
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert!(
        left.identities.is_empty(),
        "the old user is kept, without the identity"
    );
    app.stop().await;
}

on_both_backends!(
    an_external_id_held_by_another_user_is_taken_unless_replace_existing,
    binding_gives_the_identitys_user_the_external_id_and_refuses_a_second_one,
    importing_an_identity_needs_the_import_permission,
    lookups_of_unknown_records_and_missing_oneofs_are_told_apart,
);
