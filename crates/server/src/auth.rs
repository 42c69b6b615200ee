//! Caller authentication: internal services present `authorization: Bearer
//! <key>`; keys are configured per service and kept only as SHA-256, so the
//! lookup compares hashes, never the keys. The caller's name goes into logs,
//! traces and the audit trail; its permissions are checked against the table
//! in [`crate::permissions`].

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;

use crate::config::{Permission, ResolvedCaller};
use crate::error::ApiError;

/// The authenticated caller of a request, in its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The configured service name.
    pub name: Arc<str>,
    permissions: HashSet<Permission>,
}

impl Caller {
    /// A caller named `name` holding `permissions`.
    #[cfg(test)]
    pub(crate) fn new(name: &str, permissions: impl IntoIterator<Item = Permission>) -> Self {
        Self {
            name: name.into(),
            permissions: permissions.into_iter().collect(),
        }
    }

    /// Fails with `CALLER_NOT_PERMITTED` unless the caller holds `permission`.
    ///
    /// # Errors
    /// [`ApiError::CallerNotPermitted`].
    pub(crate) fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.permissions.contains(&permission) {
            return Ok(());
        }
        Err(ApiError::CallerNotPermitted {
            permission: permission.as_str(),
        })
    }
}

/// Authenticates callers; the tonic interceptor in front of IdentityService.
#[derive(Debug, Clone)]
pub(crate) struct CallerAuth {
    by_key_hash: Arc<HashMap<[u8; 32], Arc<Caller>>>,
    /// Set when no keys are configured (allowed on loopback only): every call
    /// is this caller.
    open: Option<Arc<Caller>>,
}

/// The name open-mode calls are logged under.
pub(crate) const OPEN_MODE_CALLER: &str = "unauthenticated-loopback";

impl CallerAuth {
    /// An authenticator for `callers`; with none, the service runs open.
    pub(crate) fn new(callers: &[ResolvedCaller]) -> Self {
        let by_key_hash = callers
            .iter()
            .map(|c| {
                (
                    c.key_sha256,
                    Arc::new(Caller {
                        name: c.name.as_str().into(),
                        permissions: c.permissions.clone(),
                    }),
                )
            })
            .collect::<HashMap<_, _>>();
        let open = by_key_hash.is_empty().then(|| {
            Arc::new(Caller {
                name: OPEN_MODE_CALLER.into(),
                permissions: [Permission::Core, Permission::Import, Permission::Admin]
                    .into_iter()
                    .collect(),
            })
        });
        Self {
            by_key_hash: Arc::new(by_key_hash),
            open,
        }
    }

    /// Whether the service accepts calls without a key.
    pub(crate) fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// The caller named by the request's `authorization` metadata.
    ///
    /// # Errors
    /// `UNAUTHENTICATED_CALLER` when the header is missing, malformed or unknown.
    pub(crate) fn authenticate(&self, metadata: &MetadataMap) -> Result<Arc<Caller>, ApiError> {
        if let Some(open) = &self.open {
            return Ok(open.clone());
        }
        let header = metadata
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::UnauthenticatedCaller)?;
        let (scheme, key) = header
            .split_once(' ')
            .ok_or(ApiError::UnauthenticatedCaller)?;
        let key = key.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || key.is_empty() || key.len() > 512 {
            return Err(ApiError::UnauthenticatedCaller);
        }
        let hash: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        self.by_key_hash
            .get(&hash)
            .cloned()
            .ok_or(ApiError::UnauthenticatedCaller)
    }
}

impl tonic::service::Interceptor for CallerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let caller = self.authenticate(request.metadata())?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use tonic::service::Interceptor;

    use super::*;

    const KEY: &str = "orders-service-key-0123456789abcdef";

    fn auth() -> CallerAuth {
        CallerAuth::new(&[ResolvedCaller {
            name: "orders".into(),
            key_sha256: Sha256::digest(KEY.as_bytes()).into(),
            permissions: [Permission::Core].into_iter().collect(),
        }])
    }

    fn request(authorization: Option<&str>) -> tonic::Request<()> {
        let mut request = tonic::Request::new(());
        if let Some(value) = authorization {
            request
                .metadata_mut()
                .insert("authorization", value.parse().expect("ascii"));
        }
        request
    }

    #[test]
    fn the_right_key_names_the_caller_and_its_permissions() {
        let request = auth()
            .call(request(Some(&format!("Bearer {KEY}"))))
            .expect("authenticated");
        let caller = request
            .extensions()
            .get::<Arc<Caller>>()
            .expect("caller attached");
        assert_eq!(&*caller.name, "orders");
        assert!(caller.require(Permission::Core).is_ok());
        assert!(matches!(
            caller.require(Permission::Admin),
            Err(ApiError::CallerNotPermitted {
                permission: "admin"
            })
        ));
        assert!(
            auth()
                .call(super::tests::request(Some(&format!("bearer {KEY}"))))
                .is_ok(),
            "scheme is case-insensitive"
        );
    }

    #[test]
    fn missing_malformed_and_wrong_keys_are_unauthenticated() {
        for header in [
            None,
            Some("Bearer"),
            Some("Bearer "),
            Some(&*format!("Basic {KEY}")),
            Some("Bearer wrong-key"),
        ] {
            let status = auth().call(request(header)).expect_err("refused");
            assert_eq!(status.code(), tonic::Code::Unauthenticated, "{header:?}");
            assert!(!status.message().contains(KEY));
        }
    }

    #[test]
    fn without_configured_callers_every_call_is_the_open_caller() {
        let open = CallerAuth::new(&[]);
        assert!(open.is_open());
        let caller = open.authenticate(&MetadataMap::new()).expect("open");
        assert_eq!(&*caller.name, OPEN_MODE_CALLER);
        assert!(caller.require(Permission::Admin).is_ok());
    }
}
