use secrecy::{ExposeSecret, SecretString};
use sqlx::Connection;
use storage::{
    Account, AppKind, BindRequest, Constraint, Engine, Entity, IdentityRef, ImportedIdentity,
    StorageError, UserId, UserLookup,
};

use crate::support::{TestDb, app, login, new_user, openid, t0, unionid};

fn identity(app_id: &str, open_id: &str) -> IdentityRef {
    IdentityRef {
        app_id: app(app_id),
        openid: openid(open_id),
    }
}

fn request(identity: IdentityRef, account: Account, replace_existing: bool) -> BindRequest {
    BindRequest {
        identity,
        import: None,
        account,
        replace_existing,
        actor: "crm".into(),
        at: t0(),
    }
}

async fn owner(db: &TestDb, app_id: &str, open_id: &str) -> UserId {
    db.storage
        .profile(&UserLookup::Identity {
            app_id: app(app_id),
            openid: openid(open_id),
        })
        .await
        .unwrap()
        .unwrap()
        .user_id
}

pub(crate) async fn binding_to_a_user_id_covers_every_case(db: TestDb) {
    let storage = &db.storage;
    let alice = new_user(storage, "wxa", "o-alice").await;
    let bob = new_user(storage, "wxa", "o-bob").await;
    storage
        .record_login(&login("wxb", "o-bob-b", None, t0()))
        .await
        .unwrap();

    let unknown = request(identity("wxa", "o-nobody"), Account::UserId(alice), false);
    assert!(matches!(
        storage.bind(&unknown).await,
        Err(StorageError::NotFound(Entity::Identity))
    ));
    let no_user = request(
        identity("wxa", "o-alice"),
        Account::UserId(UserId::generate()),
        true,
    );
    assert!(matches!(
        storage.bind(&no_user).await,
        Err(StorageError::NotFound(Entity::User))
    ));
    let same = storage
        .bind(&request(
            identity("wxa", "o-alice"),
            Account::UserId(alice),
            false,
        ))
        .await
        .unwrap();
    assert_eq!(same.user_id, alice);
    let taken = request(identity("wxa", "o-bob"), Account::UserId(alice), false);
    assert!(matches!(
        storage.bind(&taken).await,
        Err(StorageError::AlreadyExists(Constraint::Identity))
    ));
    assert_eq!(
        owner(&db, "wxa", "o-bob").await,
        bob,
        "a refused bind changes nothing"
    );

    let moved = storage
        .bind(&request(
            identity("wxa", "o-bob"),
            Account::UserId(alice),
            true,
        ))
        .await
        .unwrap();
    assert_eq!(moved.user_id, alice);
    assert_eq!(moved.identities.len(), 2);
    assert_eq!(owner(&db, "wxa", "o-bob").await, alice);
    let old = storage
        .profile(&UserLookup::UserId(bob))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        old.identities.len(),
        0,
        "the old user stays, without the identity"
    );
}

pub(crate) async fn binding_to_an_external_id_covers_every_case(db: TestDb) {
    let storage = &db.storage;
    let carol = new_user(storage, "wxa", "o-carol").await;
    let dave = new_user(storage, "wxa", "o-dave").await;
    let erin = new_user(storage, "wxa", "o-erin").await;
    let ext = |e: &str| Account::ExternalId(e.to_owned());

    // Nobody holds it and the user has none: the user takes it.
    let taken = storage
        .bind(&request(identity("wxa", "o-carol"), ext("crm-c"), false))
        .await
        .unwrap();
    assert_eq!(
        (taken.user_id, taken.external_id.as_deref()),
        (carol, Some("crm-c"))
    );
    // Already the user's: no-op.
    assert_eq!(
        storage
            .bind(&request(identity("wxa", "o-carol"), ext("crm-c"), false))
            .await
            .unwrap()
            .user_id,
        carol
    );
    // Held by another user, this user has none.
    let held = request(identity("wxa", "o-dave"), ext("crm-c"), false);
    assert!(matches!(
        storage.bind(&held).await,
        Err(StorageError::AlreadyExists(Constraint::ExternalId))
    ));
    let moved = storage
        .bind(&request(identity("wxa", "o-dave"), ext("crm-c"), true))
        .await
        .unwrap();
    assert_eq!(moved.user_id, carol);
    assert_eq!(owner(&db, "wxa", "o-dave").await, carol);
    let _ = dave;
    // The user holds another external id.
    storage
        .bind(&request(identity("wxa", "o-erin"), ext("crm-e"), false))
        .await
        .unwrap();
    let other = request(identity("wxa", "o-erin"), ext("crm-c"), false);
    assert!(matches!(
        storage.bind(&other).await,
        Err(StorageError::AlreadyExists(Constraint::Identity))
    ));
    let to_holder = storage
        .bind(&request(identity("wxa", "o-erin"), ext("crm-c"), true))
        .await
        .unwrap();
    assert_eq!(to_holder.user_id, carol);
    // ... and nobody holds the new one: a new user takes it.
    storage
        .bind(&request(identity("wxa", "o-erin"), ext("crm-c"), false))
        .await
        .unwrap();
    let to_new = storage
        .bind(&request(identity("wxa", "o-carol"), ext("crm-new"), true))
        .await
        .unwrap();
    assert_ne!(to_new.user_id, carol);
    assert_ne!(to_new.user_id, erin);
    assert_eq!(to_new.external_id.as_deref(), Some("crm-new"));
    assert_eq!(to_new.identities.len(), 1);
    let events = storage.audit_events(None, 100).await.unwrap();
    assert!(events.iter().filter(|e| e.kind == "bind").count() >= 5);
}

pub(crate) async fn a_trusted_import_creates_the_identity_on_the_account(db: TestDb) {
    let storage = &db.storage;
    let mut import = request(
        identity("wxweb", "o-imported"),
        Account::ExternalId("crm-9".into()),
        false,
    );
    import.import = Some(ImportedIdentity {
        app_kind: AppKind::Website,
        unionid: Some(unionid("u9")),
    });
    let profile = storage.bind(&import).await.unwrap();
    assert_eq!(profile.external_id.as_deref(), Some("crm-9"));
    assert_eq!(profile.identities[0].app_kind, AppKind::Website);
    // A later login of the same person in another app joins the imported user.
    let joined = storage
        .record_login(&login("wxmini", "o-m", Some("u9"), t0()))
        .await
        .unwrap();
    assert_eq!(joined.user_id, profile.user_id);
}

pub(crate) async fn unbind_removes_the_identity_and_its_credentials(db: TestDb) {
    let storage = &db.storage;
    let mut first = login("wxa", "o1", Some("u1"), t0());
    first.session_key = Some(SecretString::from("a2V5"));
    let user = storage.record_login(&first).await.unwrap().user_id;
    storage
        .record_login(&login("wxb", "o2", Some("u1"), t0()))
        .await
        .unwrap();
    let remaining = storage
        .unbind(&identity("wxa", "o1"), "crm", t0())
        .await
        .unwrap();
    assert_eq!(remaining.user_id, user);
    assert_eq!(remaining.identities.len(), 1);
    assert!(
        storage
            .session_key(&app("wxa"), &openid("o1"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        storage.unbind(&identity("wxa", "o1"), "crm", t0()).await,
        Err(StorageError::NotFound(Entity::Identity))
    ));
    // Logging in again starts over... but the unionid still names the user.
    let back = storage.record_login(&first).await.unwrap();
    assert_eq!(back.user_id, user);
    assert_eq!(
        storage
            .session_key(&app("wxa"), &openid("o1"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "a2V5"
    );

    // A user left with no identity still has a profile, by every lookup.
    for identity_left in [identity("wxa", "o1"), identity("wxb", "o2")] {
        storage.unbind(&identity_left, "crm", t0()).await.unwrap();
    }
    storage
        .set_external_id(&user, Some("crm-alone"), "crm", t0())
        .await
        .unwrap();
    for lookup in [
        UserLookup::UserId(user),
        UserLookup::ExternalId("crm-alone".into()),
    ] {
        let alone = storage.profile(&lookup).await.unwrap().unwrap();
        assert_eq!(alone.user_id, user);
        assert!(alone.identities.is_empty(), "{:?}", alone.identities);
        assert_eq!(alone.unionid, None);
    }
    assert!(
        storage
            .profile(&UserLookup::Identity {
                app_id: app("wxa"),
                openid: openid("o1"),
            })
            .await
            .unwrap()
            .is_none()
    );
}

pub(crate) async fn a_duplicate_external_id_is_already_exists(db: TestDb) {
    let storage = &db.storage;
    let a = new_user(storage, "wxa", "o1").await;
    let b = new_user(storage, "wxa", "o2").await;
    storage
        .set_external_id(&a, Some("dup"), "crm", t0())
        .await
        .unwrap();
    let error = storage
        .set_external_id(&b, Some("dup"), "crm", t0())
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::AlreadyExists(Constraint::ExternalId)),
        "{error:?}"
    );
    assert!(matches!(
        storage
            .set_external_id(&UserId::generate(), Some("x"), "crm", t0())
            .await,
        Err(StorageError::NotFound(Entity::User))
    ));
}

pub(crate) async fn concurrent_binds_to_one_new_external_id_end_on_one_user(db: TestDb) {
    let storage = &db.storage;
    for n in 0..5 {
        new_user(storage, "wxa", &format!("o-{n}")).await;
    }
    let tasks = (0..5).map(|n| {
        let storage = storage.clone();
        tokio::spawn(async move {
            let account = Account::ExternalId("crm-shared".into());
            storage
                .bind(&request(identity("wxa", &format!("o-{n}")), account, true))
                .await
        })
    });
    let bound: Vec<_> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap().user_id)
        .collect();
    let holder = storage
        .profile(&UserLookup::ExternalId("crm-shared".into()))
        .await
        .unwrap()
        .unwrap();
    assert!(bound.iter().all(|user| *user == holder.user_id));
    assert_eq!(holder.identities.len(), 5);
}

/// Makes every profile read of the user named by the next `kind` audit event
/// fail (its privileges are no longer JSON), from inside the transaction that
/// records the event: a read after that transaction's commit fails, while its
/// own writes all succeed.
async fn break_profile_reads_after(db: &TestDb, kind: &str) {
    let mut conn = sqlx::AnyConnection::connect(&db.config.url).await.unwrap();
    let statements = match db.storage.engine() {
        Engine::Sqlite => vec![format!(
            "CREATE TRIGGER break_profile AFTER INSERT ON audit_events WHEN NEW.kind = '{kind}' \
             BEGIN UPDATE users SET privileges = 'not json' WHERE user_id = NEW.user_id; END"
        )],
        Engine::Postgres => vec![
            "CREATE FUNCTION break_profile() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN UPDATE users SET privileges = 'not json' WHERE user_id = NEW.user_id; \
             RETURN NEW; END $$"
                .to_owned(),
            format!(
                "CREATE TRIGGER break_profile AFTER INSERT ON audit_events FOR EACH ROW \
                 WHEN (NEW.kind = '{kind}') EXECUTE FUNCTION break_profile()"
            ),
        ],
    };
    for statement in statements {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

async fn audit_kinds(storage: &storage::Storage) -> Vec<String> {
    storage
        .audit_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

pub(crate) async fn a_bind_that_answers_an_error_committed_nothing(db: TestDb) {
    let storage = &db.storage;
    let alice = new_user(storage, "wxa", "o-alice").await;
    let mut import = request(identity("wxa", "o-imported"), Account::UserId(alice), false);
    import.import = Some(ImportedIdentity {
        app_kind: AppKind::MiniProgram,
        unionid: None,
    });
    break_profile_reads_after(&db, "bind").await;

    let answer = storage.bind(&import).await;
    let bound = storage
        .profile(&UserLookup::Identity {
            app_id: app("wxa"),
            openid: openid("o-imported"),
        })
        .await;
    match answer {
        // The service gives a ticket back after an error: the bind must not stand.
        Err(error) => {
            assert!(
                matches!(bound, Ok(None)),
                "bind answered {error:?} but its identity was committed: {bound:?}"
            );
            assert!(!audit_kinds(storage).await.contains(&"bind".to_owned()));
        }
        Ok(profile) => assert!(
            profile
                .identities
                .iter()
                .any(|i| i.openid.as_str() == "o-imported")
        ),
    }
}

pub(crate) async fn an_unbind_that_answers_an_error_committed_nothing(db: TestDb) {
    let storage = &db.storage;
    let alice = new_user(storage, "wxa", "o-alice").await;
    break_profile_reads_after(&db, "unbind").await;

    let answer = storage
        .unbind(&identity("wxa", "o-alice"), "crm", t0())
        .await;
    match answer {
        // A retry would answer IDENTITY_NOT_FOUND for an unbind that was reported failed.
        Err(error) => {
            let still_bound = storage
                .profile(&UserLookup::Identity {
                    app_id: app("wxa"),
                    openid: openid("o-alice"),
                })
                .await;
            assert!(
                matches!(&still_bound, Ok(Some(profile)) if profile.user_id == alice),
                "unbind answered {error:?} but its removal was committed"
            );
            assert!(!audit_kinds(storage).await.contains(&"unbind".to_owned()));
        }
        Ok(profile) => assert!(profile.identities.is_empty()),
    }
}
