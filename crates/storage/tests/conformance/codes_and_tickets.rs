use secrecy::ExposeSecret;
use storage::{CodeClaim, IdentityRef, Ticket};

use crate::support::{TestDb, app, new_user, openid, secs, t0};

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
    storage
        .release_ticket(ticket.expose_secret())
        .await
        .unwrap();
    assert!(
        storage
            .consume_ticket(ticket.expose_secret(), t0() + secs(12))
            .await
            .unwrap()
            .is_some(),
        "a released ticket may be used again"
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
