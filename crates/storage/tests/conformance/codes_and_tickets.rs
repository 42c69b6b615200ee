use secrecy::ExposeSecret;
use storage::{Account, CodeClaim, Constraint, IdentityRef, StorageError, Ticket};

use crate::support::{TestDb, app, lifetimes, new_user, openid, secs, t0};

pub(crate) async fn a_used_code_is_refused_on_replay(db: TestDb) {
    let storage = &db.storage;
    let wxa = app("wxa");
    assert_eq!(
        storage.claim_code(&wxa, "code-1", t0()).await.unwrap(),
        CodeClaim::Fresh
    );
    assert_eq!(
        storage
            .claim_code(&wxa, "code-1", t0() + secs(1))
            .await
            .unwrap(),
        CodeClaim::AlreadyUsed
    );
    assert_eq!(
        storage
            .claim_code(&app("wxb"), "code-1", t0())
            .await
            .unwrap(),
        CodeClaim::Fresh,
        "per app"
    );

    storage.mark_code_ambiguous(&wxa, "code-1").await.unwrap();
    assert_eq!(
        storage
            .claim_code(&wxa, "code-1", t0() + secs(2))
            .await
            .unwrap(),
        CodeClaim::LostToFailedAttempt
    );

    assert_eq!(
        storage.claim_code(&wxa, "code-2", t0()).await.unwrap(),
        CodeClaim::Fresh
    );
    storage.release_code(&wxa, "code-2").await.unwrap();
    assert_eq!(
        storage
            .claim_code(&wxa, "code-2", t0() + secs(1))
            .await
            .unwrap(),
        CodeClaim::Fresh,
        "released"
    );

    // After its five minutes the record is ignored.
    assert_eq!(
        storage
            .claim_code(&wxa, "code-1", t0() + secs(301))
            .await
            .unwrap(),
        CodeClaim::Fresh
    );
}

pub(crate) async fn a_ticket_is_single_use_and_expires(db: TestDb) {
    let storage = &db.storage;
    new_user(storage, "wxa", "o1").await;
    let identity = IdentityRef {
        app_id: app("wxa"),
        openid: openid("o1"),
    };
    let ticket = storage.create_ticket(&identity, true, t0()).await.unwrap();
    assert_eq!(
        storage
            .consume_ticket(ticket.expose_secret(), t0() + secs(10))
            .await
            .unwrap(),
        Some(Ticket {
            identity: identity.clone(),
            is_new_user: true
        })
    );
    assert_eq!(
        storage
            .consume_ticket(ticket.expose_secret(), t0() + secs(11))
            .await
            .unwrap(),
        None,
        "single use"
    );
    let late = storage.create_ticket(&identity, false, t0()).await.unwrap();
    assert_eq!(
        storage
            .consume_ticket(late.expose_secret(), t0() + secs(300))
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert_eq!(storage.consume_ticket("unknown", t0()).await.unwrap(), None);
    let nobody = IdentityRef {
        app_id: app("wxa"),
        openid: openid("nobody"),
    };
    assert!(storage.create_ticket(&nobody, false, t0()).await.is_err());
}

pub(crate) async fn a_ticket_is_spent_only_by_a_bind_that_commits(db: TestDb) {
    let storage = &db.storage;
    let holder = new_user(storage, "wxa", "o1").await;
    let other = new_user(storage, "wxa", "o2").await;
    let identity = IdentityRef {
        app_id: app("wxa"),
        openid: openid("o1"),
    };
    let ticket = storage.create_ticket(&identity, false, t0()).await.unwrap();
    let refused = storage
        .bind_by_ticket(
            ticket.expose_secret(),
            &Account::UserId(other),
            false,
            "api",
            t0(),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(StorageError::AlreadyExists(Constraint::Identity))
        ),
        "{refused:?}"
    );
    let moved = storage
        .bind_by_ticket(
            ticket.expose_secret(),
            &Account::UserId(other),
            true,
            "api",
            t0() + secs(1),
        )
        .await
        .unwrap()
        .expect("the refused bind left the ticket unspent");
    assert_eq!(moved.user_id, other);
    assert_ne!(moved.user_id, holder);
    assert!(
        storage
            .bind_by_ticket(
                ticket.expose_secret(),
                &Account::UserId(other),
                true,
                "api",
                t0() + secs(2),
            )
            .await
            .unwrap()
            .is_none(),
        "spent by the bind that committed"
    );
}

pub(crate) async fn a_ticket_redeemed_for_a_session_is_spent_with_it(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    let identity = IdentityRef {
        app_id: app("wxa"),
        openid: openid("o1"),
    };
    let ticket = storage.create_ticket(&identity, true, t0()).await.unwrap();
    let redeemed = storage
        .redeem_ticket(ticket.expose_secret(), lifetimes(secs(3600)), "api", t0())
        .await
        .unwrap()
        .expect("a live ticket");
    assert_eq!(redeemed.user_id, user);
    assert!(redeemed.ticket.is_new_user);
    assert_eq!(redeemed.session.session.user_id, user);
    assert!(
        storage
            .session(&redeemed.session.session.session_id)
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        storage
            .redeem_ticket(ticket.expose_secret(), lifetimes(secs(3600)), "api", t0())
            .await
            .unwrap()
            .is_none(),
        "single use"
    );

    // The identity went away after the callback, its tickets with it.
    let orphan = storage.create_ticket(&identity, false, t0()).await.unwrap();
    storage.unbind(&identity, "api", t0()).await.unwrap();
    let gone = storage
        .redeem_ticket(orphan.expose_secret(), lifetimes(secs(3600)), "api", t0())
        .await;
    assert!(matches!(gone, Ok(None)), "{gone:?}");
}
