//! The contract's names are what other teams code against: a rename here must
//! be a deliberate, visible change, so this test pins them.

use prost::Message;
use prost_types::FileDescriptorSet;
use server::pb;

fn contract() -> prost_types::FileDescriptorProto {
    let set = FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptor set decodes");
    set.file
        .into_iter()
        .find(|f| f.name() == "wechat/identity/v1/identity.proto")
        .expect("the contract file is in the descriptor set")
}

fn fields(file: &prost_types::FileDescriptorProto, message: &str) -> Vec<String> {
    file.message_type
        .iter()
        .find(|m| m.name() == message)
        .unwrap_or_else(|| panic!("message {message} exists"))
        .field
        .iter()
        .map(|f| f.name().to_owned())
        .collect()
}

#[test]
fn the_service_has_every_rpc_of_the_contract() {
    let file = contract();
    assert_eq!(file.package(), "wechat.identity.v1");
    let service = file
        .service
        .iter()
        .find(|s| s.name() == "IdentityService")
        .expect("IdentityService");
    let methods: Vec<_> = service.method.iter().map(|m| m.name().to_owned()).collect();
    for rpc in [
        "MiniProgramLogin",
        "GetPhoneNumber",
        "BindUser",
        "GetProfile",
        "RefreshToken",
        "WebLogin",
        "VerifyToken",
        "RevokeSession",
        "UnbindUser",
        "GetAppAccessToken",
    ] {
        assert!(methods.iter().any(|m| m == rpc), "missing rpc {rpc}");
        let method = service
            .method
            .iter()
            .find(|m| m.name() == rpc)
            .expect("rpc");
        assert_eq!(
            method.input_type(),
            format!(".wechat.identity.v1.{rpc}Request")
        );
        assert_eq!(
            method.output_type(),
            format!(".wechat.identity.v1.{rpc}Response")
        );
    }
}

#[test]
fn messages_carry_the_exact_field_names() {
    let file = contract();
    let expect = |message: &str, names: &[&str]| {
        let actual = fields(&file, message);
        for name in names {
            assert!(
                actual.iter().any(|a| a == name),
                "{message} lacks {name}: {actual:?}"
            );
        }
    };
    expect("MiniProgramLoginRequest", &["app_id", "code"]);
    expect(
        "MiniProgramLoginResponse",
        &["user_id", "openid", "unionid", "is_new_user", "session"],
    );
    expect("GetPhoneNumberRequest", &["app_id", "code", "user_id"]);
    expect(
        "GetPhoneNumberResponse",
        &["phone_number", "pure_phone_number", "country_code"],
    );
    expect(
        "BindUserRequest",
        &[
            "user_id",
            "external_id",
            "ticket",
            "mini_program_code",
            "identity",
            "replace_existing",
        ],
    );
    expect("BindUserResponse", &["profile"]);
    expect(
        "GetProfileRequest",
        &[
            "user_id",
            "external_id",
            "identity",
            "unionid",
            "refresh_from_wechat",
        ],
    );
    expect("RefreshTokenRequest", &["refresh_token"]);
    expect("RefreshTokenResponse", &["session"]);
    expect("WebLoginRequest", &["ticket"]);
    expect(
        "WebLoginResponse",
        &["user_id", "openid", "unionid", "is_new_user", "session"],
    );
    expect("VerifyTokenRequest", &["access_token"]);
    expect(
        "VerifyTokenResponse",
        &[
            "active",
            "user_id",
            "session_id",
            "app_id",
            "openid",
            "expires_at",
        ],
    );
    expect("RevokeSessionRequest", &["session_id", "refresh_token"]);
    expect("UnbindUserRequest", &["identity"]);
    expect("UnbindUserResponse", &["profile"]);
    expect(
        "Session",
        &[
            "access_token",
            "access_token_expires_at",
            "refresh_token",
            "refresh_token_expires_at",
            "session_id",
        ],
    );
    expect(
        "Profile",
        &[
            "user_id",
            "external_id",
            "unionid",
            "nickname",
            "avatar_url",
            "sex",
            "province",
            "city",
            "country",
            "privileges",
            "phone",
            "identities",
            "created_at",
            "updated_at",
        ],
    );
    expect(
        "Phone",
        &["phone_number", "pure_phone_number", "country_code"],
    );
    expect(
        "LinkedIdentity",
        &["app_id", "app_kind", "openid", "unionid", "linked_at"],
    );
    expect("MiniProgramCode", &["app_id", "code"]);
    expect("WechatIdentity", &["app_id", "openid"]);
}

#[test]
fn oneofs_and_enums_are_named_as_documented() {
    let file = contract();
    let oneof = |message: &str| -> Vec<String> {
        file.message_type
            .iter()
            .find(|m| m.name() == message)
            .expect("message")
            .oneof_decl
            .iter()
            .map(|o| o.name().to_owned())
            .collect()
    };
    assert_eq!(oneof("BindUserRequest"), ["account", "proof"]);
    assert_eq!(oneof("GetProfileRequest"), ["lookup"]);
    assert_eq!(oneof("RevokeSessionRequest"), ["target"]);

    let values = |name: &str| -> Vec<String> {
        file.enum_type
            .iter()
            .find(|e| e.name() == name)
            .unwrap_or_else(|| panic!("enum {name}"))
            .value
            .iter()
            .map(|v| v.name().to_owned())
            .collect()
    };
    assert_eq!(values("Sex"), ["SEX_UNSPECIFIED", "SEX_MALE", "SEX_FEMALE"]);
    assert_eq!(
        values("AppKind"),
        [
            "APP_KIND_UNSPECIFIED",
            "APP_KIND_MINI_PROGRAM",
            "APP_KIND_OFFICIAL_ACCOUNT",
            "APP_KIND_WEBSITE"
        ]
    );
}

#[test]
fn the_country_code_is_a_string_and_timestamps_are_well_known_types() {
    let file = contract();
    let message = file
        .message_type
        .iter()
        .find(|m| m.name() == "Phone")
        .expect("Phone");
    let country = message
        .field
        .iter()
        .find(|f| f.name() == "country_code")
        .expect("country_code");
    assert_eq!(
        country.r#type(),
        prost_types::field_descriptor_proto::Type::String
    );
    let session = file
        .message_type
        .iter()
        .find(|m| m.name() == "Session")
        .expect("Session");
    let expires = session
        .field
        .iter()
        .find(|f| f.name() == "access_token_expires_at")
        .expect("field");
    assert_eq!(expires.type_name(), ".google.protobuf.Timestamp");
}

/// SECURITY.md's threat table names, for every defence, the test that proves
/// it: each named test must exist, or the table promises what nothing checks.
#[test]
fn every_test_security_md_names_exists() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let security = std::fs::read_to_string(root.join("SECURITY.md")).expect("SECURITY.md");
    let mut named = 0;
    for row in security.lines().filter(|line| line.starts_with("| ")) {
        let Some(proof) = row.trim_end_matches('|').rsplit('|').next() else {
            continue;
        };
        let mut file: Option<String> = None;
        let mut rest = proof;
        while let Some(start) = rest.find('`') {
            let Some(len) = rest[start + 1..].find('`') else {
                break;
            };
            let before = &rest[..start];
            let span = &rest[start + 1..start + 1 + len];
            rest = &rest[start + len + 2..];
            let Some((path, test)) = span.rsplit_once("::") else {
                continue;
            };
            if path.ends_with(".rs") {
                file = Some(path.to_owned());
            } else if !path.is_empty() && before.trim_end().ends_with("conformance") {
                file = Some(format!("crates/storage/tests/conformance/{path}.rs"));
            } else if !path.is_empty() {
                continue;
            }
            let file = file
                .as_deref()
                .unwrap_or_else(|| panic!("{span}: which file?"));
            let text = std::fs::read_to_string(root.join(file))
                .unwrap_or_else(|e| panic!("SECURITY.md names {file}: {e}"));
            assert!(
                text.contains(&format!("fn {test}(")),
                "SECURITY.md names {file}::{test}, which does not exist"
            );
            named += 1;
        }
    }
    assert!(
        named >= 30,
        "only {named} tests found in SECURITY.md's tables"
    );
}
