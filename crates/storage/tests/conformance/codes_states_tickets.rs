use secrecy::ExposeSecret;
use storage::{CodeClaim, IdentityRef, NewOAuthState, StateUse, Ticket};

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

fn new_state() -> NewOAuthState {
    NewOAuthState {
        app_id: app("wxoa"),
        scope: "snsapi_userinfo".into(),
        return_to: "https://example.com/back".into(),
        caller_state: Some("caller-42".into()),
        at: t0(),
    }
}

pub(crate) async fn an_oauth_state_is_single_use_and_expires(db: TestDb) {
    let storage = &db.storage;
    let token = storage.create_oauth_state(&new_state()).await.unwrap();
    let token = token.expose_secret();
    assert_eq!(token.len(), 32);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("other"), Some("c1"), t0())
            .await
            .unwrap(),
        StateUse::Invalid,
        "other app"
    );
    let StateUse::First(record) = storage
        .consume_oauth_state(token, &app("wxoa"), Some("c1"), t0() + secs(1))
        .await
        .unwrap()
    else {
        panic!("first use");
    };
    assert_eq!(record.caller_state.as_deref(), Some("caller-42"));
    assert_eq!(record.return_to, "https://example.com/back");
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("c2"), t0() + secs(2))
            .await
            .unwrap(),
        StateUse::Invalid
    );

    let expired = storage.create_oauth_state(&new_state()).await.unwrap();
    let late = storage
        .consume_oauth_state(
            expired.expose_secret(),
            &app("wxoa"),
            Some("c"),
            t0() + secs(600),
        )
        .await
        .unwrap();
    assert_eq!(late, StateUse::Invalid);
    assert_eq!(
        storage
            .consume_oauth_state("nope", &app("wxoa"), Some("c"), t0())
            .await
            .unwrap(),
        StateUse::Invalid
    );
}

pub(crate) async fn a_double_callback_with_the_same_code_within_30s_is_a_repeat(db: TestDb) {
    let storage = &db.storage;
    new_user(storage, "wxoa", "o1").await;
    let identity = IdentityRef {
        app_id: app("wxoa"),
        openid: openid("o1"),
    };
    let token = storage.create_oauth_state(&new_state()).await.unwrap();
    let token = token.expose_secret();
    assert!(matches!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0())
            .await
            .unwrap(),
        StateUse::First(_)
    ));
    // Before the first callback finished, a repeat must wait for it.
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0())
            .await
            .unwrap(),
        StateUse::Pending
    );
    // Also one that read its clock just before the first did (it lost the row lock).
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0() - secs(1))
            .await
            .unwrap(),
        StateUse::Pending,
        "a concurrent repeat is a repeat whichever clock read came first"
    );
    storage
        .complete_oauth_state(token, &identity, true)
        .await
        .unwrap();
    let repeat = storage
        .consume_oauth_state(token, &app("wxoa"), Some("code"), t0() + secs(3))
        .await
        .unwrap();
    match repeat {
        StateUse::Repeat {
            record,
            identity: seen,
            is_new_user,
        } => {
            assert_eq!(seen, identity);
            assert!(
                is_new_user,
                "the repeat remembers that the first login created the user"
            );
            assert_eq!(record.caller_state.as_deref(), Some("caller-42"));
        }
        other => panic!("expected a repeat, got {other:?}"),
    }
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("other"), t0() + secs(4))
            .await
            .unwrap(),
        StateUse::Invalid,
        "other code"
    );
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0() + secs(31))
            .await
            .unwrap(),
        StateUse::Invalid,
        "too late"
    );
    assert!(
        storage
            .complete_oauth_state("unknown", &identity, false)
            .await
            .is_err()
    );
}

pub(crate) async fn a_declined_callback_repeats_as_declined_and_never_as_a_login(db: TestDb) {
    let storage = &db.storage;
    let token = storage.create_oauth_state(&new_state()).await.unwrap();
    let token = token.expose_secret();
    assert!(matches!(
        storage
            .consume_oauth_state(token, &app("wxoa"), None, t0())
            .await
            .unwrap(),
        StateUse::First(_)
    ));
    match storage
        .consume_oauth_state(token, &app("wxoa"), None, t0() + secs(2))
        .await
        .unwrap()
    {
        StateUse::RepeatDeclined(record) => {
            assert_eq!(record.caller_state.as_deref(), Some("caller-42"));
        }
        other => panic!("expected a declined repeat, got {other:?}"),
    }
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0() + secs(3))
            .await
            .unwrap(),
        StateUse::Invalid,
        "a code after a decline is not the same callback"
    );
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), None, t0() + secs(31))
            .await
            .unwrap(),
        StateUse::Invalid,
        "too late"
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

pub(crate) async fn a_callback_that_failed_after_consent_repeats_its_failure(db: TestDb) {
    let storage = &db.storage;
    let token = storage.create_oauth_state(&new_state()).await.unwrap();
    let token = token.expose_secret();
    assert!(matches!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("code"), t0())
            .await
            .unwrap(),
        StateUse::First(_)
    ));
    storage
        .fail_oauth_state(token, "temporarily_unavailable")
        .await
        .unwrap();
    match storage
        .consume_oauth_state(token, &app("wxoa"), Some("code"), t0() + secs(2))
        .await
        .unwrap()
    {
        StateUse::RepeatFailed { record, failure } => {
            assert_eq!(failure, "temporarily_unavailable");
            assert_eq!(record.caller_state.as_deref(), Some("caller-42"));
        }
        other => panic!("expected a failed repeat, got {other:?}"),
    }
    assert_eq!(
        storage
            .consume_oauth_state(token, &app("wxoa"), Some("other"), t0() + secs(3))
            .await
            .unwrap(),
        StateUse::Invalid,
        "another code is not the same callback"
    );
    assert!(
        storage
            .fail_oauth_state("unknown", "server_error")
            .await
            .is_err(),
        "an unknown state cannot fail"
    );
}
