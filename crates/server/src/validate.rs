//! Request field checks, the "Field formats" table of identity.proto. Each
//! check names the field and never echoes the value (it may be a secret).

use crate::error::ApiError;

/// Characters, not bytes, as the contract counts.
fn chars(value: &str) -> usize {
    value.chars().count()
}

fn token_like(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `app_id`: 1..=32 of `[A-Za-z0-9_-]`; empty allowed where `may_be_empty`.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn app_id(field: &str, value: &str, may_be_empty: bool) -> Result<(), ApiError> {
    if value.is_empty() {
        return if may_be_empty {
            Ok(())
        } else {
            Err(ApiError::field(field, "is required"))
        };
    }
    if value.len() > 32 || !token_like(value) {
        return Err(ApiError::field(
            field,
            "must be 1 to 32 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// A login or phone code: 1..=128 printable ASCII, no whitespace.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn code(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if value.len() > 128 || !value.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(ApiError::field(
            field,
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(())
}

/// An openid or unionid: 1..=64 of `[A-Za-z0-9_-]`.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn wechat_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if value.len() > 64 || !token_like(value) {
        return Err(ApiError::field(
            field,
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// An external_id: 1..=128 characters, no control characters.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn external_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if chars(value) > 128 || value.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

/// A user_id: a UUID in lowercase hyphenated form.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn user_id(field: &str, value: &str) -> Result<uuid::Uuid, ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    let parsed = uuid::Uuid::try_parse(value)
        .ok()
        .filter(|u| u.hyphenated().to_string() == value);
    parsed.ok_or_else(|| ApiError::field(field, "must be a UUID in lowercase hyphenated form"))
}

/// A ticket or refresh token: 1..=256 of the URL-safe base64 alphabet.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn opaque_token(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if value.len() > 256 || !token_like(value) {
        return Err(ApiError::field(
            field,
            "must be 1 to 256 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// A session_id: 1..=64 of `[A-Za-z0-9_-]`.
///
/// # Errors
/// `FIELD_INVALID` naming `field`.
pub(crate) fn session_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        return Err(ApiError::field(field, "is required"));
    }
    if value.len() > 64 || !token_like(value) {
        return Err(ApiError::field(
            field,
            "must be 1 to 64 characters of [A-Za-z0-9_-]",
        ));
    }
    Ok(())
}

/// An unset required oneof.
pub(crate) fn oneof_missing(oneof: &str) -> ApiError {
    ApiError::field(oneof, "one of its fields is required")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(result: Result<(), ApiError>) -> Option<String> {
        match result {
            Err(ApiError::FieldInvalid { field, .. }) => Some(field),
            _ => None,
        }
    }

    #[test]
    fn app_ids_follow_the_contract() {
        assert!(app_id("app_id", "wxd000000000000001", false).is_ok());
        assert!(app_id("app_id", "", true).is_ok());
        assert_eq!(
            field_of(app_id("app_id", "", false)).as_deref(),
            Some("app_id")
        );
        assert!(app_id("mini_program_code.app_id", &"w".repeat(33), false).is_err());
        assert!(app_id("app_id", "wx 1", false).is_err());
    }

    #[test]
    fn codes_are_printable_ascii_without_spaces() {
        assert!(code("code", "0a3Xyz-_.~!").is_ok());
        for bad in ["", "a b", "a\tb", "é", &"c".repeat(129)] {
            assert!(code("code", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn external_ids_allow_unicode_but_no_control_characters() {
        assert!(external_id("external_id", "用户-42 🙂").is_ok());
        assert!(external_id("external_id", &"字".repeat(128)).is_ok());
        assert!(external_id("external_id", &"字".repeat(129)).is_err());
        assert!(external_id("external_id", "a\nb").is_err());
    }

    #[test]
    fn user_ids_must_be_canonical_uuids() {
        assert!(user_id("user_id", "0190c1e2-0000-7000-8000-000000000001").is_ok());
        assert!(user_id("user_id", "0190C1E2-0000-7000-8000-000000000001").is_err());
        assert!(user_id("user_id", "0190c1e200007000800000000000000001").is_err());
        assert!(user_id("user_id", "not-a-uuid").is_err());
    }

    #[test]
    fn tokens_and_ids_have_bounded_alphabets() {
        assert!(opaque_token("ticket", "abc_DEF-123").is_ok());
        assert!(opaque_token("ticket", "abc=").is_err());
        assert!(opaque_token("refresh_token", &"a".repeat(257)).is_err());
        assert!(wechat_id("identity.openid", "oGZUI0egBJY1zhBYw2KhdUfwVJJE").is_ok());
        assert!(wechat_id("identity.openid", "o/1").is_err());
        assert!(session_id("session_id", &"s".repeat(65)).is_err());
        assert_eq!(
            field_of(Err(oneof_missing("account"))).as_deref(),
            Some("account")
        );
    }
}
