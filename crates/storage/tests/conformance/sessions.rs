use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::{AnyConnection, Connection};
use storage::{
    Entity, IssuedSession, NewSession, Rotation, SessionId, SessionLifetimes, StorageError, UserId,
};

use crate::support::{TestDb, app, lifetimes, new_user, openid, secs, t0};

fn new_session(user_id: UserId) -> NewSession {
    NewSession {
        user_id,
        app_id: app("wxa"),
        openid: openid("o1"),
        lifetimes: lifetimes(secs(3600)),
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
        .rotate_refresh_token(&first, lifetimes(secs(3600)), t0() + secs(600))
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
        .rotate_refresh_token(&first, lifetimes(secs(3600)), t0() + secs(700))
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
            lifetimes(secs(3600)),
            t0() + secs(800),
        )
        .await
        .unwrap();
    assert!(matches!(after, Rotation::Invalid));
    assert!(matches!(
        storage
            .rotate_refresh_token("unknown", lifetimes(secs(1)), t0())
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
                .rotate_refresh_token(&token, lifetimes(secs(3600)), t0() + secs(1))
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
        .rotate_refresh_token(&token, lifetimes(secs(3600)), t0() + secs(3600))
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
            .rotate_refresh_token(token, lifetimes(secs(60)), t0())
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
        Err(StorageError::NotFound(Entity::User))
    ));
    let stranger = NewSession {
        openid: openid("o-someone-else"),
        ..new_session(user)
    };
    assert!(matches!(
        storage.create_session(&stranger).await,
        Err(StorageError::NotFound(Entity::Identity))
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
        .rotate_refresh_token(&first, lifetimes(secs(3600)), t0() + secs(1))
        .await
        .unwrap()
    else {
        panic!("expected a rotation");
    };
    assert_eq!(epochs(storage).await, (start, local));

    // Reuse revokes: one move, on this replica and in the database.
    storage
        .rotate_refresh_token(&first, lifetimes(secs(3600)), t0() + secs(2))
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

/// Lifetimes with a reuse grace of `grace` seconds.
fn with_grace(grace: u64) -> SessionLifetimes {
    SessionLifetimes {
        reuse_grace: secs(grace),
        ..lifetimes(secs(3600))
    }
}

/// The session a rotation issued, if it issued one.
fn rotated_token(rotation: &Rotation) -> Option<&IssuedSession> {
    match rotation {
        Rotation::Rotated(issued) | Rotation::Grace(issued) => Some(issued),
        _ => None,
    }
}

/// Refresh tokens of `session_id` not yet retired, read straight from the table.
async fn unretired_tokens(db: &TestDb, session_id: &SessionId) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&db.config.url).await.unwrap();
    let count: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1 AND retired_at IS NULL",
    )
    .bind(session_id.to_string())
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let _ = conn.close().await;
    count
}

pub(crate) async fn the_previous_token_within_the_grace_gets_a_new_pair_for_the_same_session(
    db: TestDb,
) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let session_id = issued.session.session_id;
    let first = issued.refresh_token.expose_secret().to_owned();
    let rotated_at = t0() + secs(100);
    let Rotation::Rotated(lost) = storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at)
        .await
        .unwrap()
    else {
        panic!("expected a rotation");
    };

    // The answer carrying `lost` never arrived: the client presents `first` again.
    let retry_at = rotated_at + secs(10);
    let Rotation::Grace(again) = storage
        .rotate_refresh_token(&first, with_grace(10), retry_at)
        .await
        .unwrap()
    else {
        panic!("expected a grace rotation");
    };
    assert_eq!(again.session.session_id, session_id);
    assert_eq!(again.refresh_expires_at, retry_at + secs(3600));
    let token = again.refresh_token.expose_secret().to_owned();
    assert_ne!(token, first);
    assert_ne!(token, lost.refresh_token.expose_secret());
    let stored = storage.session(&session_id).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, None, "a grace use revokes nothing");
    assert_eq!(stored.expires_at, retry_at + secs(3600));
    assert_eq!(
        unretired_tokens(&db, &session_id).await,
        1,
        "the lost token was retired"
    );

    let events = storage.audit_events(Some(&user), 10).await.unwrap();
    let grace: Vec<_> = events
        .iter()
        .filter(|event| event.kind == "refresh_grace")
        .collect();
    assert_eq!(grace.len(), 1, "{events:?}");
    assert_eq!(grace[0].at, retry_at);
    assert_eq!(grace[0].details["session_id"], session_id.to_string());
    let details = grace[0].details.to_string();
    for secret in [
        first.as_str(),
        lost.refresh_token.expose_secret(),
        token.as_str(),
    ] {
        assert!(!details.contains(secret), "no token in {details}");
    }

    // The new token carries the session on as usual.
    let next = storage
        .rotate_refresh_token(&token, with_grace(10), retry_at + secs(600))
        .await
        .unwrap();
    assert!(matches!(next, Rotation::Rotated(ref n) if n.session.session_id == session_id));
}

pub(crate) async fn reuse_after_the_grace_or_of_an_older_token_revokes_the_session(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;

    // After the grace: revoked as without one.
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    let rotated_at = t0() + secs(100);
    let rotation = storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at)
        .await
        .unwrap();
    assert!(matches!(rotation, Rotation::Rotated(_)));
    let late = storage
        .rotate_refresh_token(
            &first,
            with_grace(10),
            rotated_at + secs(10) + Duration::from_millis(1),
        )
        .await
        .unwrap();
    assert!(
        matches!(late, Rotation::Reused { session_id } if session_id == issued.session.session_id)
    );
    let stored = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.revoked_at.is_some());

    // Two generations back, well within the grace: revoked.
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    let Rotation::Rotated(second) = storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at)
        .await
        .unwrap()
    else {
        panic!("expected a rotation");
    };
    let third = storage
        .rotate_refresh_token(
            second.refresh_token.expose_secret(),
            with_grace(10),
            rotated_at + secs(1),
        )
        .await
        .unwrap();
    assert!(matches!(third, Rotation::Rotated(_)));
    let old = storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at + secs(2))
        .await
        .unwrap();
    assert!(matches!(old, Rotation::Reused { .. }), "{old:?}");
    let stored = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.revoked_at.is_some());

    // A zero grace is no grace: today's behaviour.
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    storage
        .rotate_refresh_token(&first, with_grace(0), rotated_at)
        .await
        .unwrap();
    let at_once = storage
        .rotate_refresh_token(&first, with_grace(0), rotated_at)
        .await
        .unwrap();
    assert!(matches!(at_once, Rotation::Reused { .. }), "{at_once:?}");

    // A revoked session gets no grace.
    let issued = storage.create_session(&new_session(user)).await.unwrap();
    let first = issued.refresh_token.expose_secret().to_owned();
    storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at)
        .await
        .unwrap();
    storage
        .revoke_session(&issued.session.session_id, "logout", "api", rotated_at)
        .await
        .unwrap();
    let revoked = storage
        .rotate_refresh_token(&first, with_grace(10), rotated_at + secs(1))
        .await
        .unwrap();
    assert!(matches!(revoked, Rotation::Invalid), "{revoked:?}");
}

pub(crate) async fn concurrent_presentations_within_the_grace_leave_one_live_token(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    for mixed in [false, true] {
        let issued = storage.create_session(&new_session(user)).await.unwrap();
        let session_id = issued.session.session_id;
        let first = issued.refresh_token.expose_secret().to_owned();
        let Rotation::Rotated(second) = storage
            .rotate_refresh_token(&first, with_grace(10), t0() + secs(1))
            .await
            .unwrap()
        else {
            panic!("expected a rotation");
        };
        let second = second.refresh_token.expose_secret().to_owned();
        // Ten retries of the previous token; with `mixed`, half of them
        // race the live token instead.
        let tasks = (0..10).map(|i| {
            let storage = storage.clone();
            let token = if mixed && i % 2 == 1 {
                second.clone()
            } else {
                first.clone()
            };
            tokio::spawn(async move {
                storage
                    .rotate_refresh_token(&token, with_grace(10), t0() + secs(2))
                    .await
            })
        });
        let results: Vec<Rotation> = futures::future::join_all(tasks)
            .await
            .into_iter()
            .map(|joined| joined.unwrap().unwrap())
            .collect();
        let graced = results
            .iter()
            .filter(|r| matches!(r, Rotation::Grace(_)))
            .count();
        let issued_tokens = results.iter().filter_map(rotated_token).count();
        assert!(issued_tokens >= 1, "mixed: {mixed}: {results:?}");
        assert_eq!(
            unretired_tokens(&db, &session_id).await,
            1,
            "mixed: {mixed}: never two live refresh tokens"
        );
        if !mixed {
            // The first retry took the grace; every later one presents a
            // token two generations back, and the session is revoked.
            assert_eq!(graced, 1, "{results:?}");
            assert_eq!(issued_tokens, 1, "{results:?}");
            let stored = storage.session(&session_id).await.unwrap().unwrap();
            assert!(stored.revoked_at.is_some());
        }
    }
}

pub(crate) async fn no_refresh_token_outlives_the_sessions_max_lifetime(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let capped = SessionLifetimes {
        refresh_ttl: secs(3600),
        max_lifetime: secs(5000),
        reuse_grace: secs(10),
    };
    let issued = storage
        .create_session(&NewSession {
            lifetimes: capped,
            ..new_session(user)
        })
        .await
        .unwrap();
    let session_id = issued.session.session_id;
    let ends_at = t0() + secs(5000);
    assert_eq!(issued.refresh_expires_at, t0() + secs(3600));
    let mut token = issued.refresh_token.expose_secret().to_owned();
    for at in [3000, 4000, 4990] {
        let Rotation::Rotated(next) = storage
            .rotate_refresh_token(&token, capped, t0() + secs(at))
            .await
            .unwrap()
        else {
            panic!("expected a rotation at {at}");
        };
        assert_eq!(next.refresh_expires_at, ends_at, "capped at {at}");
        assert_eq!(next.session.expires_at, ends_at);
        assert_eq!(next.session.created_at, t0());
        token = next.refresh_token.expose_secret().to_owned();
    }
    let expired = storage
        .rotate_refresh_token(&token, capped, ends_at)
        .await
        .unwrap();
    assert!(
        matches!(expired, Rotation::Expired { session_id: s } if s == session_id),
        "{expired:?}"
    );

    // The first refresh token of a session obeys the cap too, and a session
    // past it gets no grace.
    let short = SessionLifetimes {
        max_lifetime: secs(60),
        ..capped
    };
    let issued = storage
        .create_session(&NewSession {
            lifetimes: short,
            ..new_session(user)
        })
        .await
        .unwrap();
    assert_eq!(issued.refresh_expires_at, t0() + secs(60));
    let (_, login) = storage
        .record_login_with_session(
            &crate::support::login("wxa", "o1", None, t0()),
            short,
            "api",
        )
        .await
        .unwrap();
    assert_eq!(login.refresh_expires_at, t0() + secs(60));
    let first = issued.refresh_token.expose_secret().to_owned();
    let rotation = storage
        .rotate_refresh_token(&first, short, t0() + secs(55))
        .await
        .unwrap();
    assert!(matches!(rotation, Rotation::Rotated(_)));
    let retried = storage
        .rotate_refresh_token(&first, short, t0() + secs(60))
        .await
        .unwrap();
    assert!(matches!(retried, Rotation::Expired { .. }), "{retried:?}");
    let stored = storage
        .session(&issued.session.session_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.revoked_at, None, "an ended session is not revoked");
}
