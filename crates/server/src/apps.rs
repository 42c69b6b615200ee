//! The configured WeChat apps, looked up the way the contract says: by id and
//! required kind, or, when `app_id` is empty, the one app of that kind.

use std::collections::HashMap;

use wechat_client::{AppCredentials, AppId};

use crate::config::{AppKind, ResolvedApp};
use crate::error::ApiError;

/// The apps, by id.
#[derive(Debug, Clone)]
pub(crate) struct Apps {
    by_id: HashMap<AppId, ResolvedApp>,
}

/// Which kinds a request field accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// A mini program (`wx.login` and phone codes).
    MiniProgram,
    /// An Official Account or a website app (the browser OAuth flow).
    Web,
    /// Any configured app (imports and lookups).
    Any,
    /// An app that has an app access token: a mini program or an Official Account.
    TokenHolder,
}

impl Wanted {
    fn accepts(self, kind: AppKind) -> bool {
        match self {
            Wanted::MiniProgram => kind == AppKind::MiniProgram,
            Wanted::Web => matches!(kind, AppKind::OfficialAccount | AppKind::Website),
            Wanted::Any => true,
            Wanted::TokenHolder => matches!(kind, AppKind::MiniProgram | AppKind::OfficialAccount),
        }
    }
}

impl Apps {
    /// The registry of `apps` (validated by config: ids are unique).
    pub(crate) fn new(apps: Vec<ResolvedApp>) -> Self {
        Self {
            by_id: apps
                .into_iter()
                .map(|app| (app.app_id.clone(), app))
                .collect(),
        }
    }

    /// Every app, for the token manager and the banner.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &ResolvedApp> {
        self.by_id.values()
    }

    /// Credentials of every app, for the access-token manager.
    pub(crate) fn credentials(&self) -> Vec<AppCredentials> {
        self.by_id
            .values()
            .map(|app| AppCredentials {
                app_id: app.app_id.clone(),
                secret: app.secret.clone(),
            })
            .collect()
    }

    /// The app `app_id` names in `field`, of a kind `wanted` accepts; an empty
    /// `app_id` means the only such app.
    ///
    /// # Errors
    /// `APP_NOT_FOUND` for an unknown id or one of another kind; `APP_AMBIGUOUS`
    /// when empty and several apps qualify; `FIELD_INVALID` when malformed.
    pub(crate) fn resolve(
        &self,
        field: &str,
        app_id: &str,
        wanted: Wanted,
    ) -> Result<&ResolvedApp, ApiError> {
        if app_id.is_empty() {
            let mut candidates = self.by_id.values().filter(|app| wanted.accepts(app.kind));
            return match (candidates.next(), candidates.next()) {
                (Some(app), None) => Ok(app),
                (Some(_), Some(_)) => Err(ApiError::AppAmbiguous {
                    field: field.into(),
                }),
                (None, _) => Err(ApiError::AppNotFound {
                    field: field.into(),
                }),
            };
        }
        crate::validate::app_id(field, app_id, false)?;
        let id = AppId::new(app_id).map_err(|e| ApiError::field(field, e.to_string()))?;
        self.by_id
            .get(&id)
            .filter(|app| wanted.accepts(app.kind))
            .ok_or_else(|| ApiError::AppNotFound {
                field: field.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use wechat_client::AppSecret;

    use super::*;

    fn app(id: &str, kind: AppKind) -> ResolvedApp {
        ResolvedApp {
            app_id: AppId::new(id).expect("id"),
            kind,
            secret: AppSecret::new("s"),
            allowed_return_to: Vec::new(),
            mp_verify_token: None,
        }
    }

    fn registry() -> Apps {
        Apps::new(vec![
            app("wxmini1", AppKind::MiniProgram),
            app("wxoa1", AppKind::OfficialAccount),
            app("wxweb1", AppKind::Website),
        ])
    }

    fn reason(result: Result<&ResolvedApp, ApiError>) -> Option<&'static str> {
        result.err().and_then(|e| e.reason())
    }

    #[test]
    fn an_empty_app_id_means_the_only_app_of_the_kind() {
        let apps = registry();
        assert_eq!(
            apps.resolve("app_id", "", Wanted::MiniProgram)
                .map(|a| a.app_id.as_str())
                .ok(),
            Some("wxmini1")
        );
        assert_eq!(
            reason(apps.resolve("app_id", "", Wanted::Web)),
            Some("APP_AMBIGUOUS")
        );
        let only_web = Apps::new(vec![app("wxoa1", AppKind::OfficialAccount)]);
        assert_eq!(
            reason(only_web.resolve("app_id", "", Wanted::MiniProgram)),
            Some("APP_NOT_FOUND")
        );
    }

    #[test]
    fn a_named_app_must_exist_and_be_of_the_wanted_kind() {
        let apps = registry();
        assert!(apps.resolve("app_id", "wxoa1", Wanted::Web).is_ok());
        assert_eq!(
            reason(apps.resolve("app_id", "wxoa1", Wanted::MiniProgram)),
            Some("APP_NOT_FOUND")
        );
        assert_eq!(
            reason(apps.resolve("app_id", "wxnope", Wanted::Any)),
            Some("APP_NOT_FOUND")
        );
        assert_eq!(
            reason(apps.resolve("mini_program_code.app_id", "wx 1", Wanted::Any)),
            Some("FIELD_INVALID")
        );
        assert_eq!(apps.credentials().len(), 3);
    }
}
