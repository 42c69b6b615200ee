use secrecy::ExposeSecret;
use storage::{NewSession, Rotation, SessionId, StorageError, UserId};

use crate::support::{TestDb, app, new_user, openid, secs, t0};

fn new_session(user_id: UserId) -> NewSession {
    NewSession {
        user_id,
        app_id: app("wxa"),
        openid: openid("o1"),
        refresh_ttl: secs(3600),
        actor: "api".into(),
        at: t0(),
    }
}

pub(crate) async fn rotation_issues_a_new_generation_and_reuse_revokes_the_session(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    assert_eq!(first.len(), 43, "URL-safe base64 of 32 bytes, no padding");

    let Rotation::Rotated(next) = storage
        .rotate_refresh_token(&first, secs(3600), t0() + secs(600))
        .await
        .unwrap()
    else {
        panic!("expected a rotation");
    };
    assert_eq!(next.session.session_id, issued.session.session_id);
    assert_eq!(
        next.session.expires_at,
        t0() + secs(4200),
        "sliding lifetime"
    );
    assert_ne!(next.refresh_token.expose_secret(), first);

    let reuse = storage
        .rotate_refresh_token(&first, secs(3600), t0() + secs(700))
        .await
        .unwrap();
    assert!(
        matches!(reuse, Rotation::Reused { session_id } if session_id == issued.session.session_id)
    );
    let session = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(session.revoked_at, Some(t0() + secs(700)));
    // The current generation is dead too now.
    let after = storage
        .rotate_refresh_token(
            next.refresh_token.expose_secret(),
            secs(3600),
            t0() + secs(800),
        )
        .await
        .unwrap();
    assert!(matches!(after, Rotation::Invalid));
    assert!(matches!(
        storage
            .rotate_refresh_token("unknown", secs(1), t0())
            .await
            .unwrap(),
        Rotation::Invalid
    ));
}

pub(crate) async fn concurrent_rotations_of_one_token_have_exactly_one_winner(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let token = issued.refresh_token.expose_secret().to_owned();
    let tasks = (0..10).map(|_| {
        let storage = storage.clone();
        let token = token.clone();
        tokio::spawn(async move {
            storage
                .rotate_refresh_token(&token, secs(3600), t0() + secs(1))
                .await
        })
    });
    let results: Vec<Rotation> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|joined| joined.unwrap().unwrap())
        .collect();
    let rotated = results
        .iter()
        .filter(|r| matches!(r, Rotation::Rotated(_)))
        .count();
    let reused = results
        .iter()
        .filter(|r| matches!(r, Rotation::Reused { .. }))
        .count();
    assert_eq!(rotated, 1);
    assert!(reused >= 1);
    let session = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert!(session.revoked_at.is_some());
}

pub(crate) async fn sessions_expire_and_revoke(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let token = issued.refresh_token.expose_secret().to_owned();
    let late = storage
        .rotate_refresh_token(&token, secs(3600), t0() + secs(3600))
        .await
        .unwrap();
    assert!(matches!(late, Rotation::Invalid), "expired");

    let second = storage.create_session(&new_session(user)).await.unwrap();
    assert!(
        storage
            .revoke_session(&second.session.session_id, "logout", "api", t0())
            .await
            .unwrap()
    );
    assert!(
        !storage
            .revoke_session(&second.session.session_id, "logout", "api", t0())
            .await
            .unwrap()
    );
    assert!(
        !storage
            .revoke_session(&SessionId::generate(), "logout", "api", t0())
            .await
            .unwrap()
    );
    let token = second.refresh_token.expose_secret();
    assert!(matches!(
        storage
            .rotate_refresh_token(token, secs(60), t0())
            .await
            .unwrap(),
        Rotation::Invalid
    ));

    let third = storage.create_session(&new_session(user)).await.unwrap();
    assert!(
        storage
            .revoke_by_refresh_token(third.refresh_token.expose_secret(), "logout", "api", t0())
            .await
            .unwrap()
    );
    assert!(
        !storage
            .revoke_by_refresh_token("nope", "logout", "api", t0())
            .await
            .unwrap()
    );
    let stored = storage
        .session(&third.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_at, Some(t0()));

    assert!(matches!(
        storage
            .create_session(&new_session(UserId::generate()))
            .await,
        Err(StorageError::NotFound { what: "user" })
    ));
    let stranger = NewSession {
        openid: openid("o-someone-else"),
        ..new_session(user)
    };
    assert!(matches!(
        storage.create_session(&stranger).await,
        Err(StorageError::NotFound { what: "identity" })
    ));
}

/// What a VerifyToken cache reads: `(database epoch, this process's changes)`.
async fn epochs(storage: &storage::Storage) -> (i64, u64) {
    (
        storage.session_epoch().await.unwrap(),
        storage.local_session_changes(),
    )
}

pub(crate) async fn every_change_to_a_sessions_standing_moves_the_epoch(db: TestDb) {
    use crate::support::{key_ring, login};
    let storage = &db.storage;
    let replica = db.connect_again(key_ring(&db.key)).await.unwrap();
    let (start, local) = epochs(storage).await;
    let moved = |by: i64| (start + by, local + u64::try_from(by).unwrap());

    // Issuing and rotating leave the standing alone.
    let user = new_user(storage, "wxa", "o1").await;
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    let Rotation::Rotated(next) = storage
        .rotate_refresh_token(&first, secs(3600), t0() + secs(1))
        .await
        .unwrap()
    else {
        panic!("expected a rotation");
    };
    assert_eq!(epochs(storage).await, (start, local));

    // Reuse revokes: one move, on this replica and in the database.
    storage
        .rotate_refresh_token(&first, secs(3600), t0() + secs(2))
        .await
        .unwrap();
    assert_eq!(epochs(storage).await, moved(1));
    // Revoking what is already revoked changes nothing.
    assert!(
        !storage
            .revoke_session(&issued.session.session_id, "again", "api", t0())
            .await
            .unwrap()
    );
    assert!(
        !storage
            .revoke_by_refresh_token(next.refresh_token.expose_secret(), "r", "api", t0())
            .await
            .unwrap()
    );
    assert_eq!(epochs(storage).await, moved(1));

    let second = storage.create_session(&new_session(user)).await.unwrap();
    assert!(
        storage
            .revoke_session(&second.session.session_id, "logout", "api", t0())
            .await
            .unwrap()
    );
    assert_eq!(epochs(storage).await, moved(2));
    let third = storage.create_session(&new_session(user)).await.unwrap();
    assert!(
        storage
            .revoke_by_refresh_token(third.refresh_token.expose_secret(), "logout", "api", t0())
            .await
            .unwrap()
    );
    assert_eq!(epochs(storage).await, moved(3));

    // Another replica sees the database move, not this process's counter.
    assert_eq!(replica.session_epoch().await.unwrap(), start + 3);
    let fourth = storage.create_session(&new_session(user)).await.unwrap();
    replica
        .revoke_session(&fourth.session.session_id, "admin", "api", t0())
        .await
        .unwrap();
    assert_eq!(epochs(storage).await, (start + 4, local + 3));

    // Unbinding an identity ends its sessions.
    storage.create_session(&new_session(user)).await.unwrap();
    storage
        .unbind(
            &storage::IdentityRef {
                app_id: crate::support::app("wxa"),
                openid: crate::support::openid("o1"),
            },
            "crm",
            t0(),
        )
        .await
        .unwrap();
    assert_eq!(epochs(storage).await, (start + 5, local + 4));

    // A merge moves the absorbed user's sessions to the kept user.
    storage
        .record_login(&login("wxoa", "o-oa", Some("u1"), t0()))
        .await
        .unwrap();
    let absorbed = storage
        .record_login(&login("wxb", "o-b", None, t0()))
        .await
        .unwrap()
        .user_id;
    storage
        .create_session(&storage::NewSession {
            app_id: crate::support::app("wxb"),
            openid: crate::support::openid("o-b"),
            ..new_session(absorbed)
        })
        .await
        .unwrap();
    let before_merge = epochs(storage).await;
    assert_eq!(before_merge, (start + 5, local + 4));
    let outcome = storage
        .record_login(&login("wxb", "o-b", Some("u1"), t0() + secs(5)))
        .await
        .unwrap();
    assert!(outcome.merged.is_some());
    assert_eq!(epochs(storage).await, (start + 6, local + 5));
}
