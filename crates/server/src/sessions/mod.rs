//! Session tokens: access tokens are EdDSA-signed JWTs any service can verify
//! against the JWKS; refresh tokens are opaque and live in storage.

pub mod jwt;
pub mod verify_cache;
