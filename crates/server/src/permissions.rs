//! Which permissions each RPC needs: one table, [`TABLE`], checked in one
//! place (`grpc.rs`, right after the caller's key and before any field of the
//! request is looked at) and printed in the proto's "Calling the service"
//! section, which a test holds to it.
//!
//! Permissions do not imply one another: a caller holding only `admin` or
//! only `import` may not call the login RPCs, and `import` adds to `core`
//! for a BindUser `identity` proof rather than replacing it.

use crate::auth::Caller;
use crate::config::Permission::{self, Admin, Core, Import};
use crate::error::ApiError;
use crate::pb;

/// One row of the table: an RPC, or one variant of its request, and every
/// permission a caller needs for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// The gRPC method name, as in the proto.
    pub rpc: &'static str,
    /// The field set in the request's deciding oneof (BindUser's `proof`,
    /// RevokeSession's `target`); `None` for the RPC as a whole, or for such
    /// a request with its oneof unset (which then fails with FIELD_INVALID).
    pub variant: Option<&'static str>,
    /// The permissions the caller must all hold.
    pub needs: &'static [Permission],
}

const fn rule(rpc: &'static str, needs: &'static [Permission]) -> Rule {
    Rule {
        rpc,
        variant: None,
        needs,
    }
}

const fn variant(rpc: &'static str, field: &'static str, needs: &'static [Permission]) -> Rule {
    Rule {
        rpc,
        variant: Some(field),
        needs,
    }
}

/// The permission table.
///
/// RevokeSession needs `core` by either target: it is how a caller's own
/// logout ends a session, with the refresh token it keeps or the `sid` of an
/// access token it verified, and a revocation only ever takes access away.
pub const TABLE: &[Rule] = &[
    rule("MiniProgramLogin", &[Core]),
    rule("GetPhoneNumber", &[Core]),
    rule("BindUser", &[Core]),
    variant("BindUser", "ticket", &[Core]),
    variant("BindUser", "mini_program_code", &[Core]),
    variant("BindUser", "identity", &[Core, Import]),
    rule("GetProfile", &[Core]),
    rule("RefreshToken", &[Core]),
    rule("WebLogin", &[Core]),
    rule("VerifyToken", &[Core]),
    rule("RevokeSession", &[Core]),
    variant("RevokeSession", "session_id", &[Core]),
    variant("RevokeSession", "refresh_token", &[Core]),
    rule("UnbindUser", &[Core]),
    rule("GetAppAccessToken", &[Admin]),
];

/// The permissions `rpc` needs for a request of `variant`; `None` when the
/// table has no such row, which `check` refuses.
pub fn needs(rpc: &str, variant: Option<&str>) -> Option<&'static [Permission]> {
    TABLE
        .iter()
        .find(|rule| rule.rpc == rpc && rule.variant == variant)
        .map(|rule| rule.needs)
}

/// A request message of IdentityService: it names its RPC, and the variant
/// the table has a row for, if any.
pub(crate) trait Guarded {
    /// The gRPC method name, as in the proto.
    const RPC: &'static str;

    /// The field set in the oneof that decides what the call needs.
    fn variant(&self) -> Option<&'static str> {
        None
    }
}

/// Fails unless `caller` holds every permission the table names for `request`.
///
/// # Errors
/// `CALLER_NOT_PERMITTED` naming the first missing permission; INTERNAL when
/// the table has no row for the request (the tests keep that from shipping).
pub(crate) fn check<R: Guarded>(caller: &Caller, request: &R) -> Result<(), ApiError> {
    let variant = request.variant();
    let needs = needs(R::RPC, variant).ok_or_else(|| {
        ApiError::internal(format!("no permission rule for {} {variant:?}", R::RPC))
    })?;
    needs
        .iter()
        .try_for_each(|permission| caller.require(*permission))
}

impl Guarded for pb::MiniProgramLoginRequest {
    const RPC: &'static str = "MiniProgramLogin";
}

impl Guarded for pb::GetPhoneNumberRequest {
    const RPC: &'static str = "GetPhoneNumber";
}

impl Guarded for pb::BindUserRequest {
    const RPC: &'static str = "BindUser";

    fn variant(&self) -> Option<&'static str> {
        use pb::bind_user_request::Proof;
        self.proof.as_ref().map(|proof| match proof {
            Proof::Ticket(_) => "ticket",
            Proof::MiniProgramCode(_) => "mini_program_code",
            Proof::Identity(_) => "identity",
        })
    }
}

impl Guarded for pb::GetProfileRequest {
    const RPC: &'static str = "GetProfile";
}

impl Guarded for pb::RefreshTokenRequest {
    const RPC: &'static str = "RefreshToken";
}

impl Guarded for pb::WebLoginRequest {
    const RPC: &'static str = "WebLogin";
}

impl Guarded for pb::VerifyTokenRequest {
    const RPC: &'static str = "VerifyToken";
}

impl Guarded for pb::RevokeSessionRequest {
    const RPC: &'static str = "RevokeSession";

    fn variant(&self) -> Option<&'static str> {
        use pb::revoke_session_request::Target;
        self.target.as_ref().map(|target| match target {
            Target::SessionId(_) => "session_id",
            Target::RefreshToken(_) => "refresh_token",
        })
    }
}

impl Guarded for pb::UnbindUserRequest {
    const RPC: &'static str = "UnbindUser";
}

impl Guarded for pb::GetAppAccessTokenRequest {
    const RPC: &'static str = "GetAppAccessToken";
}

/// The RPCs of IdentityService, read from the compiled contract, each with
/// the name of its request message.
///
/// # Errors
/// The embedded descriptor set does not decode (it always does: it is the
/// one this crate was built from).
pub fn contract_rpcs() -> Result<Vec<(String, String)>, prost::DecodeError> {
    use prost::Message;
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET)?;
    Ok(set
        .file
        .iter()
        .flat_map(|file| &file.service)
        .filter(|service| service.name() == "IdentityService")
        .flat_map(|service| &service.method)
        .map(|method| {
            let input = method.input_type();
            let message = input.rsplit('.').next().unwrap_or(input);
            (method.name().to_owned(), message.to_owned())
        })
        .collect())
}

#[cfg(test)]
mod tests;
