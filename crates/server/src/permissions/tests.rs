use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorProto, FileDescriptorSet};

use super::*;
use crate::pb::bind_user_request::Proof;
use crate::pb::revoke_session_request::Target;

const PROTO: &str = include_str!("../../../../proto/wechat/identity/v1/identity.proto");

fn contract() -> FileDescriptorProto {
    FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)
        .expect("descriptor set decodes")
        .file
        .into_iter()
        .find(|file| file.name() == "wechat/identity/v1/identity.proto")
        .expect("the contract is in the descriptor set")
}

fn message<'a>(file: &'a FileDescriptorProto, name: &str) -> &'a DescriptorProto {
    file.message_type
        .iter()
        .find(|message| message.name() == name)
        .unwrap_or_else(|| panic!("message {name} exists"))
}

#[test]
fn every_rpc_of_the_contract_has_a_row_and_every_row_an_rpc() {
    let rpcs: Vec<String> = contract_rpcs()
        .expect("descriptor set decodes")
        .into_iter()
        .map(|(rpc, _)| rpc)
        .collect();
    assert_eq!(rpcs.len(), 10, "{rpcs:?}");
    for rpc in &rpcs {
        assert!(
            needs(rpc, None).is_some(),
            "{rpc} has no row in permissions::TABLE: say which permissions it needs"
        );
    }
    for rule in TABLE {
        assert!(
            rpcs.iter().any(|rpc| rpc == rule.rpc),
            "{rule:?} names no rpc of the contract"
        );
        assert!(!rule.needs.is_empty(), "{rule:?} needs nothing");
    }
    for (index, rule) in TABLE.iter().enumerate() {
        assert!(
            !TABLE[..index]
                .iter()
                .any(|other| other.rpc == rule.rpc && other.variant == rule.variant),
            "{rule:?} is in the table twice"
        );
    }
}

#[test]
fn every_field_of_a_deciding_oneof_has_a_row() {
    let file = contract();
    let rpcs = contract_rpcs().expect("descriptor set decodes");
    for rule in TABLE {
        let Some(variant) = rule.variant else {
            continue;
        };
        let (_, request) = rpcs
            .iter()
            .find(|(rpc, _)| rpc == rule.rpc)
            .expect("the rpc exists");
        let request = message(&file, request);
        let field = request
            .field
            .iter()
            .find(|field| field.name() == variant)
            .unwrap_or_else(|| panic!("{rule:?}: {} has no field {variant}", request.name()));
        let oneof = field
            .oneof_index
            .unwrap_or_else(|| panic!("{rule:?}: {variant} is in no oneof"));
        for sibling in request
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(oneof))
        {
            assert!(
                needs(rule.rpc, Some(sibling.name())).is_some(),
                "{} ({}) has no row in permissions::TABLE",
                rule.rpc,
                sibling.name()
            );
        }
    }
}

#[test]
fn each_request_names_its_rpc_and_a_row_of_the_table() {
    let rpcs = contract_rpcs().expect("descriptor set decodes");
    let named = [
        (pb::MiniProgramLoginRequest::RPC, "MiniProgramLoginRequest"),
        (pb::GetPhoneNumberRequest::RPC, "GetPhoneNumberRequest"),
        (pb::BindUserRequest::RPC, "BindUserRequest"),
        (pb::GetProfileRequest::RPC, "GetProfileRequest"),
        (pb::RefreshTokenRequest::RPC, "RefreshTokenRequest"),
        (pb::WebLoginRequest::RPC, "WebLoginRequest"),
        (pb::VerifyTokenRequest::RPC, "VerifyTokenRequest"),
        (pb::RevokeSessionRequest::RPC, "RevokeSessionRequest"),
        (pb::UnbindUserRequest::RPC, "UnbindUserRequest"),
        (
            pb::GetAppAccessTokenRequest::RPC,
            "GetAppAccessTokenRequest",
        ),
    ];
    for (rpc, request) in named {
        assert!(
            rpcs.iter().any(|(r, m)| r == rpc && m == request),
            "{request} is not the request of {rpc}"
        );
    }
    let bind = |proof| pb::BindUserRequest {
        proof,
        ..Default::default()
    };
    let revoke = |target| pb::RevokeSessionRequest { target };
    let variants = [
        bind(None).variant(),
        bind(Some(Proof::Ticket(String::new()))).variant(),
        bind(Some(Proof::MiniProgramCode(pb::MiniProgramCode::default()))).variant(),
        bind(Some(Proof::Identity(pb::WechatIdentity::default()))).variant(),
    ];
    for variant in variants {
        assert!(needs("BindUser", variant).is_some(), "{variant:?}");
    }
    for variant in [
        revoke(None).variant(),
        revoke(Some(Target::SessionId(String::new()))).variant(),
        revoke(Some(Target::RefreshToken(String::new()))).variant(),
    ] {
        assert!(needs("RevokeSession", variant).is_some(), "{variant:?}");
    }
}

#[test]
fn a_caller_needs_every_permission_of_the_row_and_none_implies_another() {
    use Permission::{Admin, Core, Import};
    let caller = |permissions: &[Permission]| Caller::new("test", permissions.iter().copied());
    let import = pb::BindUserRequest {
        proof: Some(Proof::Identity(pb::WechatIdentity::default())),
        ..Default::default()
    };
    let login = pb::MiniProgramLoginRequest::default();
    let token = pb::GetAppAccessTokenRequest::default();
    let refused = |result: Result<(), ApiError>| match result {
        Err(ApiError::CallerNotPermitted { permission }) => Some(permission),
        Err(other) => panic!("unexpected {other:?}"),
        Ok(()) => None,
    };
    assert_eq!(refused(check(&caller(&[Admin]), &login)), Some("core"));
    assert_eq!(refused(check(&caller(&[Import]), &login)), Some("core"));
    assert_eq!(refused(check(&caller(&[Core]), &login)), None);
    assert_eq!(refused(check(&caller(&[Core]), &import)), Some("import"));
    assert_eq!(
        refused(check(&caller(&[Import, Admin]), &import)),
        Some("core")
    );
    assert_eq!(refused(check(&caller(&[Core, Import]), &import)), None);
    assert_eq!(
        refused(check(&caller(&[Core, Import]), &token)),
        Some("admin")
    );
    assert_eq!(refused(check(&caller(&[Admin]), &token)), None);
}

/// The table as the proto's "Calling the service" section prints it.
fn printed_table() -> String {
    let mut lines = vec![
        "// | RPC (oneof field set)         | permissions   |".to_owned(),
        "// |-------------------------------|---------------|".to_owned(),
    ];
    for rule in TABLE {
        let operation = match rule.variant {
            Some(field) => format!("{} ({field})", rule.rpc),
            None => rule.rpc.to_owned(),
        };
        let needs: Vec<_> = rule.needs.iter().map(|p| p.as_str()).collect();
        lines.push(format!(
            "// | {operation:<29} | {:<13} |",
            needs.join(" + ")
        ));
    }
    lines.join("\n")
}

#[test]
fn the_proto_prints_the_table() {
    let table = printed_table();
    assert!(
        PROTO.contains(&table),
        "the proto's \"Calling the service\" section must print permissions::TABLE as:\n{table}"
    );
}
