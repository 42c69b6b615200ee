use secrecy::ExposeSecret;
use storage::{
    Account, BindRequest, IdentityRef, NewSession, Rotation, UserLookup, WebLoginClaim,
    WebLoginClaimed,
};

use crate::support::{TestDb, app, lifetimes, login, new_user, openid, secs, t0};

pub(crate) async fn sweep_removes_expired_rows_only(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let identity = IdentityRef {
        app_id: app("wxa"),
        openid: openid("o1"),
    };
    // A browser login claimed at `at`, whose state expires ten minutes later.
    let web_login = |state: String, at| WebLoginClaim {
        state_id: state,
        app_id: app("wxa"),
        code: Some("c".into()),
        state_expires_at: at + secs(600),
        claim_ttl: secs(15),
        at,
    };
    let session = |at, ttl| NewSession {
        user_id: user,
        app_id: app("wxa"),
        openid: openid("o1"),
        lifetimes: lifetimes(ttl),
        actor: "api".into(),
        at,
    };
    // Old rows, expired at t0 + 1 h.
    for n in 0..3 {
        storage
            .claim_web_login(&web_login(format!("old-{n}"), t0()))
            .await
            .unwrap();
        storage.create_ticket(&identity, false, t0()).await.unwrap();
        storage
            .create_session(&session(t0(), secs(60)))
            .await
            .unwrap();
    }
    storage.claim_code(&app("wxa"), "old", t0()).await.unwrap();
    // Fresh rows.
    let now = t0() + secs(3600);
    storage
        .claim_web_login(&web_login("live".into(), now))
        .await
        .unwrap();
    let live_ticket = storage.create_ticket(&identity, false, now).await.unwrap();
    let live = storage
        .create_session(&session(now, secs(3600)))
        .await
        .unwrap();
    storage.claim_code(&app("wxa"), "new", now).await.unwrap();

    let report = storage.sweep_expired(now, 2).await.unwrap();
    assert_eq!(
        (
            report.web_logins,
            report.tickets,
            report.used_codes,
            report.sessions
        ),
        (3, 3, 1, 3)
    );
    assert_eq!(report.refresh_tokens, 3);
    assert_eq!(
        storage.sweep_expired(now, 2).await.unwrap(),
        storage::SweepReport::default()
    );

    assert!(
        matches!(
            storage
                .claim_web_login(&web_login("live".into(), now + secs(1)))
                .await
                .unwrap(),
            WebLoginClaimed::Pending
        ),
        "the live claim is still there"
    );
    assert!(
        storage
            .consume_ticket(live_ticket.expose_secret(), now)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        storage
            .session(&live.session.session_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        storage
            .rotate_refresh_token(live.refresh_token.expose_secret(), lifetimes(secs(60)), now)
            .await
            .unwrap(),
        Rotation::Rotated(_)
    ));
    assert_eq!(
        storage.claim_code(&app("wxa"), "new", now).await.unwrap(),
        storage::CodeClaim::AlreadyUsed
    );
}

pub(crate) async fn signing_keys_insert_race_safely(db: TestDb) {
    let storage = &db.storage;
    let (a, b) = tokio::join!(
        storage.insert_signing_key("kid-1", b"private-a", "{\"kid\":\"kid-1\"}", t0()),
        storage.insert_signing_key("kid-1", b"private-b", "{\"kid\":\"kid-1\"}", t0()),
    );
    a.unwrap();
    b.unwrap();
    let keys = storage.active_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert!(
        [&b"private-a"[..], &b"private-b"[..]]
            .contains(&keys[0].private_key.expose_secret().as_slice())
    );
    assert!(!format!("{keys:?}").contains("private-"));
    storage
        .insert_signing_key("kid-2", b"private-c", "{}", t0() + secs(1))
        .await
        .unwrap();
    assert!(
        storage
            .retire_signing_key("kid-1", t0() + secs(2))
            .await
            .unwrap()
    );
    let keys = storage.active_signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
        ["kid-2"]
    );
}

pub(crate) async fn the_audit_trail_records_bind_unbind_merge_and_revoke(db: TestDb) {
    let storage = &db.storage;
    let user = storage
        .record_login(&login("wxa", "o1", Some("u1"), t0()))
        .await
        .unwrap()
        .user_id;
    let other = new_user(storage, "wxb", "o2").await;
    storage
        .record_login(&login("wxb", "o2", Some("u1"), t0() + secs(1)))
        .await
        .unwrap();
    storage
        .bind(&BindRequest {
            identity: IdentityRef {
                app_id: app("wxa"),
                openid: openid("o1"),
            },
            import: None,
            account: Account::ExternalId("crm-1".into()),
            replace_existing: false,
            actor: "crm".into(),
            at: t0() + secs(2),
        })
        .await
        .unwrap();
    let issued = storage
        .create_session(&NewSession {
            user_id: user,
            app_id: app("wxa"),
            openid: openid("o1"),
            lifetimes: lifetimes(secs(60)),
            actor: "api".into(),
            at: t0(),
        })
        .await
        .unwrap();
    storage
        .revoke_session(&issued.session.session_id, "logout", "api", t0() + secs(3))
        .await
        .unwrap();
    storage
        .unbind(
            &IdentityRef {
                app_id: app("wxb"),
                openid: openid("o2"),
            },
            "crm",
            t0() + secs(4),
        )
        .await
        .unwrap();

    let events = storage.audit_events(Some(&user), 50).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["unbind", "revoke", "bind", "merge"], "newest first");
    assert_eq!(events[3].other_user_id, Some(other));
    assert_eq!(events[2].actor, "crm");
    let everything =
        serde_json::to_string(&events.iter().map(|e| &e.details).collect::<Vec<_>>()).unwrap();
    assert!(!everything.contains(issued.refresh_token.expose_secret()));
    assert!(
        storage
            .profile(&UserLookup::UserId(user))
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(storage.audit_events(None, 2).await.unwrap().len(), 2);
}

pub(crate) async fn no_migration_is_pending_after_migrate_and_every_one_on_an_empty_database(
    db: TestDb,
) {
    assert_eq!(
        db.storage.pending_migrations().await.unwrap(),
        Vec::<i64>::new()
    );
    if db.config.url.starts_with("sqlite:") {
        let dir = tempfile::tempdir().unwrap();
        let empty = storage::StorageConfig::new(format!(
            "sqlite://{}",
            dir.path().join("empty.db").display()
        ));
        let fresh = storage::Storage::connect(&empty, crate::support::key_ring(&db.key))
            .await
            .unwrap();
        let pending = fresh.pending_migrations().await.unwrap();
        assert!(pending.len() >= 2 && pending.contains(&1), "{pending:?}");
    }
}

pub(crate) async fn replicas_racing_for_the_first_signing_key_end_with_one(db: TestDb) {
    let storage = &db.storage;
    let other = db
        .connect_again(crate::support::key_ring(&db.key))
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        storage.insert_first_signing_key("kid-a", b"private-a", "{}", t0()),
        other.insert_first_signing_key("kid-b", b"private-b", "{}", t0()),
    );
    assert!(
        a.unwrap() ^ b.unwrap(),
        "exactly one replica's key is inserted"
    );
    let keys = storage.active_signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1, "one active key, the winner's");
    assert!(
        !storage
            .insert_first_signing_key("kid-c", b"private-c", "{}", t0())
            .await
            .unwrap()
    );
}
