//! Session tokens: access tokens are EdDSA-signed JWTs any service can verify
//! against the JWKS; refresh tokens are opaque and live in storage.

pub(crate) mod jwt;
pub(crate) mod verify_cache;
