use std::collections::HashSet;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use storage::{AppKind, Entity, Phone, ProfileFields, StorageError, UserLookup, WebTokens};

use crate::support::{TestDb, app, lifetimes, login, openid, secs, t0, unionid};

pub(crate) async fn first_login_creates_a_user_and_the_next_login_finds_it(db: TestDb) {
    let first = db
        .storage
        .record_login(&login("wxapp1", "o1", None, t0()))
        .await
        .unwrap();
    assert!(first.is_new_user);
    let again = db
        .storage
        .record_login(&login("wxapp1", "o1", None, t0() + secs(60)))
        .await
        .unwrap();
    assert!(!again.is_new_user);
    assert_eq!(again.user_id, first.user_id);
    let profile = db
        .storage
        .profile(&UserLookup::Identity {
            app_id: app("wxapp1"),
            openid: openid("o1"),
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.user_id, first.user_id);
    assert_eq!(profile.identities.len(), 1);
    assert_eq!(profile.identities[0].last_login_at, t0() + secs(60));
    assert_eq!(profile.identities[0].linked_at, t0());
}

pub(crate) async fn a_new_identity_with_a_known_unionid_joins_that_user(db: TestDb) {
    let mini = db
        .storage
        .record_login(&login("wxmini", "o-mini", Some("u1"), t0()))
        .await
        .unwrap();
    let mut web = login("wxweb", "o-web", Some("u1"), t0() + secs(5));
    web.app_kind = AppKind::Website;
    let web = db.storage.record_login(&web).await.unwrap();
    assert!(!web.is_new_user);
    assert_eq!(web.user_id, mini.user_id);
    let profile = db
        .storage
        .profile(&UserLookup::UnionId(unionid("u1")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.identities.len(), 2);
    assert_eq!(profile.unionid, Some(unionid("u1")));
}

pub(crate) async fn an_identity_showing_its_unionid_later_merges_the_two_users(db: TestDb) {
    let storage = &db.storage;
    // The Official Account knows the unionid from the start.
    let holder = storage
        .record_login(&login("wxoa", "o-oa", Some("u1"), t0()))
        .await
        .unwrap()
        .user_id;
    // The mini program first sees the person without a unionid: a second user.
    let mut first = login("wxmini", "o-mini", None, t0() + secs(1));
    first.profile = Some(ProfileFields {
        nickname: "newer".into(),
        ..ProfileFields::default()
    });
    let other = storage.record_login(&first).await.unwrap().user_id;
    assert_ne!(holder, other);
    storage
        .set_external_id(&other, Some("crm-7"), "test", t0() + secs(2))
        .await
        .unwrap();
    let phone = Phone {
        phone_number: "13800000007".into(),
        pure_phone_number: "13800000007".into(),
        country_code: "86".into(),
    };
    storage
        .set_phone(&other, &phone, t0() + secs(2))
        .await
        .unwrap();

    let upgraded = storage
        .record_login(&login("wxmini", "o-mini", Some("u1"), t0() + secs(3)))
        .await
        .unwrap();
    let merged = upgraded.merged.expect("users merged");
    assert_eq!(upgraded.user_id, holder);
    assert_eq!(merged.kept_user_id, holder);
    assert_eq!(merged.merged_user_id, other);

    let profile = storage
        .profile(&UserLookup::UserId(holder))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.identities.len(), 2, "every identity kept");
    assert_eq!(
        profile.external_id.as_deref(),
        Some("crm-7"),
        "external id kept"
    );
    assert_eq!(profile.profile.nickname, "newer", "newer profile kept");
    assert_eq!(
        profile.phone,
        Some(phone),
        "phone re-encrypted for the kept user"
    );
    assert_eq!(
        storage.user_by_phone("13800000007", "86").await.unwrap(),
        vec![holder]
    );
    assert!(
        storage
            .profile(&UserLookup::UserId(other))
            .await
            .unwrap()
            .is_none()
    );
    let events = storage.audit_events(Some(&holder), 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "merge" && e.other_user_id == Some(other))
    );
}

pub(crate) async fn merge_is_refused_when_both_users_hold_different_external_ids(db: TestDb) {
    let storage = &db.storage;
    let holder = storage
        .record_login(&login("wxoa", "o-oa", Some("u1"), t0()))
        .await
        .unwrap()
        .user_id;
    let other = storage
        .record_login(&login("wxmini", "o-mini", None, t0()))
        .await
        .unwrap()
        .user_id;
    storage
        .set_external_id(&holder, Some("crm-1"), "test", t0())
        .await
        .unwrap();
    storage
        .set_external_id(&other, Some("crm-2"), "test", t0())
        .await
        .unwrap();

    let outcome = storage
        .record_login(&login("wxmini", "o-mini", Some("u1"), t0() + secs(1)))
        .await
        .unwrap();
    assert_eq!(outcome.user_id, other);
    assert!(outcome.merged.is_none());
    let other_profile = storage
        .profile(&UserLookup::UserId(other))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        other_profile.identities[0].unionid,
        Some(unionid("u1")),
        "unionid linked"
    );
    assert!(
        storage
            .profile(&UserLookup::UserId(holder))
            .await
            .unwrap()
            .is_some()
    );
    let events = storage.audit_events(Some(&other), 10).await.unwrap();
    assert!(events.iter().any(|e| e.kind == "merge_refused"));
}

pub(crate) async fn concurrent_first_logins_of_one_identity_create_one_user(db: TestDb) {
    let storage = Arc::new(db.storage.clone());
    let logins = (0..20).map(|i| {
        let storage = storage.clone();
        tokio::spawn(async move {
            storage
                .record_login(&login("wxapp1", "o-race", None, t0() + secs(i)))
                .await
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(logins)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let users: HashSet<_> = outcomes.iter().map(|o| o.user_id).collect();
    assert_eq!(users.len(), 1);
    assert_eq!(outcomes.iter().filter(|o| o.is_new_user).count(), 1);
}

pub(crate) async fn concurrent_first_logins_from_two_apps_with_one_unionid_create_one_user(
    db: TestDb,
) {
    for round in 0..5 {
        let union = format!("u-race-{round}");
        let tasks = ["wxmini", "wxoa", "wxweb"].map(|app_id| {
            let storage = db.storage.clone();
            let union = union.clone();
            tokio::spawn(async move {
                storage
                    .record_login(&login(
                        app_id,
                        &format!("o-{app_id}-{round}"),
                        Some(&union),
                        t0(),
                    ))
                    .await
            })
        });
        let outcomes: Vec<_> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        let users: HashSet<_> = outcomes.iter().map(|o| o.user_id).collect();
        assert_eq!(users.len(), 1, "round {round}");
        assert_eq!(outcomes.iter().filter(|o| o.is_new_user).count(), 1);
    }
}

pub(crate) async fn login_credentials_are_stored_encrypted_and_read_back(db: TestDb) {
    let storage = &db.storage;
    let mut mini = login("wxmini", "o1", Some("u1"), t0());
    mini.session_key = Some(SecretString::from("c2Vzc2lvbi1rZXktMQ=="));
    let user = storage.record_login(&mini).await.unwrap().user_id;
    mini.session_key = Some(SecretString::from("c2Vzc2lvbi1rZXktMg=="));
    storage.record_login(&mini).await.unwrap();
    let key = storage
        .session_key(&app("wxmini"), &openid("o1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        key.expose_secret(),
        "c2Vzc2lvbi1rZXktMg==",
        "replaced on every login"
    );

    let tokens = |n: u64| WebTokens {
        access_token: SecretString::from(format!("access-{n}")),
        access_expires_at: t0() + secs(7200),
        refresh_token: SecretString::from(format!("refresh-{n}")),
        refresh_expires_at: t0() + secs(30 * 86_400),
        scope: "snsapi_userinfo".into(),
    };
    let mut web = login("wxoa", "o2", Some("u1"), t0() + secs(10));
    web.app_kind = AppKind::OfficialAccount;
    web.scope = Some("snsapi_userinfo".into());
    web.web_tokens = Some(tokens(1));
    storage.record_login(&web).await.unwrap();
    let mut base = login("wxoa2", "o3", Some("u1"), t0() + secs(20));
    base.web_tokens = Some(WebTokens {
        scope: "snsapi_base".into(),
        ..tokens(9)
    });
    storage.record_login(&base).await.unwrap();

    let auth = storage
        .latest_web_authorization(&user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        auth.app_id,
        app("wxoa"),
        "snsapi_base cannot read user info"
    );
    assert_eq!(auth.tokens.access_token.expose_secret(), "access-1");
    storage
        .store_web_tokens(&app("wxoa"), &openid("o2"), &tokens(2), t0() + secs(30))
        .await
        .unwrap();
    let auth = storage
        .latest_web_authorization(&user)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.tokens.refresh_token.expose_secret(), "refresh-2");
    assert_eq!(auth.last_used_at, t0() + secs(30));
    assert!(matches!(
        storage
            .store_web_tokens(&app("wxoa"), &openid("nobody"), &tokens(3), t0())
            .await,
        Err(StorageError::NotFound(Entity::Identity))
    ));
    assert!(
        !format!("{auth:?}").contains("refresh-2"),
        "Debug hides tokens"
    );
}

pub(crate) async fn concurrent_upgrades_to_one_unionid_merge_into_one_user(db: TestDb) {
    let storage = &db.storage;
    let apps = ["wxa", "wxb", "wxc", "wxd"];
    for app_id in apps {
        storage
            .record_login(&login(app_id, "o1", None, t0()))
            .await
            .unwrap();
    }
    let tasks = apps.map(|app_id| {
        let storage = storage.clone();
        tokio::spawn(async move {
            storage
                .record_login(&login(app_id, "o1", Some("u-all"), t0() + secs(1)))
                .await
        })
    });
    let outcomes: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let users: HashSet<_> = outcomes.iter().map(|o| o.user_id).collect();
    assert_eq!(users.len(), 1);
    assert_eq!(outcomes.iter().filter(|o| o.merged.is_some()).count(), 3);
    let profile = storage
        .profile(&UserLookup::UnionId(unionid("u-all")))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.identities.len(), 4);
}

pub(crate) async fn concurrent_logins_with_sessions_each_get_their_users_session(db: TestDb) {
    let storage = &db.storage;
    // Concurrent first logins (some of one identity, some of others) each
    // get a session of the user their identity belongs to.
    let tasks = (0..24).map(|i| {
        let storage = storage.clone();
        tokio::spawn(async move {
            let open_id = format!("o-{}", i % 6);
            let mut login = login("wxapp1", &open_id, None, t0() + secs(i));
            login.session_key = Some(SecretString::from(format!("key-{i}")));
            storage
                .record_login_with_session(&login, lifetimes(secs(3600)), "test")
                .await
                .map(|(outcome, issued)| (open_id, outcome, issued))
        })
    });
    let results: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let users: HashSet<_> = results.iter().map(|(_, o, _)| o.user_id).collect();
    assert_eq!(users.len(), 6);
    assert_eq!(results.iter().filter(|(_, o, _)| o.is_new_user).count(), 6);
    for (open_id, outcome, issued) in &results {
        assert_eq!(issued.session.user_id, outcome.user_id);
        assert_eq!(issued.session.openid, openid(open_id));
        let stored = storage
            .session(&issued.session.session_id)
            .await
            .unwrap()
            .expect("session committed with the login");
        assert_eq!(stored.user_id, outcome.user_id);
        assert!(matches!(
            storage
                .rotate_refresh_token(
                    issued.refresh_token.expose_secret(),
                    lifetimes(secs(3600)),
                    t0() + secs(30)
                )
                .await
                .unwrap(),
            storage::Rotation::Rotated(_)
        ));
    }
}

/// The login every returning mini program user makes (one statement on
/// PostgreSQL): it finds the user, replaces the session_key, opens a session
/// that rotates, and leaves the profile alone; a login that shows the
/// identity's first unionid still merges.
pub(crate) async fn a_returning_login_with_a_session_keeps_every_rule_of_a_login(db: TestDb) {
    let storage = &db.storage;
    let with_key = |open_id: &str, union_id: Option<&str>, n: u64| {
        let mut login = login("wxmini", open_id, union_id, t0() + secs(n));
        login.session_key = Some(SecretString::from(format!("a2V5LQ{n}")));
        login
    };
    let (first, _) = storage
        .record_login_with_session(&with_key("o1", None, 0), lifetimes(secs(3600)), "t")
        .await
        .unwrap();
    assert!(first.is_new_user);
    let shard = storage::profile_shard(&first.user_id);
    let epoch = storage.profile_epochs().await.unwrap()[shard];

    let (again, issued) = storage
        .record_login_with_session(&with_key("o1", None, 10), lifetimes(secs(3600)), "t")
        .await
        .unwrap();
    assert_eq!((again.user_id, again.is_new_user), (first.user_id, false));
    assert!(again.merged.is_none());
    assert_eq!(issued.session.user_id, first.user_id);
    assert_eq!(issued.session.openid, openid("o1"));
    assert_eq!(
        issued.refresh_expires_at,
        t0() + secs(10) + secs(3600),
        "the first token lives refresh_ttl"
    );
    let key = storage
        .session_key(&app("wxmini"), &openid("o1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        key.expose_secret(),
        "a2V5LQ10",
        "the session_key is replaced"
    );
    assert_eq!(
        storage.profile_epochs().await.unwrap()[shard],
        epoch,
        "a returning login changes no profile"
    );
    let stored = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.user_id, first.user_id);
    let rotated = storage
        .rotate_refresh_token(
            issued.refresh_token.expose_secret(),
            lifetimes(secs(3600)),
            t0() + secs(20),
        )
        .await
        .unwrap();
    assert!(
        matches!(rotated, storage::Rotation::Rotated(_)),
        "{rotated:?}"
    );

    // A first unionid held by another user merges the two, as any login does.
    let holder = storage
        .record_login(&login("wxother", "o2", Some("u-merge"), t0()))
        .await
        .unwrap()
        .user_id;
    let (merged, issued) = storage
        .record_login_with_session(
            &with_key("o1", Some("u-merge"), 30),
            lifetimes(secs(3600)),
            "t",
        )
        .await
        .unwrap();
    assert!(merged.merged.is_some(), "{merged:?}");
    assert_eq!(issued.session.user_id, merged.user_id);
    assert!([holder, first.user_id].contains(&merged.user_id));

    // An unknown identity is created, not refused.
    let (fresh, _) = storage
        .record_login_with_session(&with_key("o3", None, 40), lifetimes(secs(3600)), "t")
        .await
        .unwrap();
    assert!(fresh.is_new_user);
}
