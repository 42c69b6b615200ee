//! Browser logins from the callback on: claimed once, completed with their
//! login and ticket in one transaction, repeats answered with the same ticket.

use std::time::SystemTime;

use secrecy::ExposeSecret;
use storage::{
    IdentityRef, Storage, Ticket, UserLookup, WebLoginClaim, WebLoginClaimed, WebLoginOutcome,
};

use crate::support::{TestDb, app, login, openid, secs, t0};

const STATE: &str = "1state000000000000000000000000001";

fn claim(code: Option<&str>, at: SystemTime) -> WebLoginClaim {
    WebLoginClaim {
        state_id: STATE.to_owned(),
        app_id: app("wxoa"),
        code: code.map(str::to_owned),
        state_expires_at: t0() + secs(600),
        claim_ttl: secs(15),
        at,
    }
}

async fn claim_at(storage: &Storage, code: Option<&str>, at: SystemTime) -> WebLoginClaimed {
    storage.claim_web_login(&claim(code, at)).await.unwrap()
}

fn claimed_at(claimed: WebLoginClaimed) -> SystemTime {
    match claimed {
        WebLoginClaimed::Claimed { claimed_at } => claimed_at,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn ticket_of(claimed: WebLoginClaimed) -> String {
    match claimed {
        WebLoginClaimed::Answered(WebLoginOutcome::Ticket(ticket)) => {
            ticket.expose_secret().to_owned()
        }
        other => panic!("expected the ticket, got {other:?}"),
    }
}

async fn identity_known(storage: &Storage, open_id: &str) -> bool {
    storage
        .profile(&UserLookup::Identity {
            app_id: app("wxoa"),
            openid: openid(open_id),
        })
        .await
        .unwrap()
        .is_some()
}

pub(crate) async fn a_claimed_login_completes_with_its_login_and_ticket_together(db: TestDb) {
    let storage = &db.storage;
    assert_eq!(storage.web_login_rows().await.unwrap(), 0);
    let claimed = claimed_at(claim_at(storage, Some("code-1"), t0()).await);
    assert_eq!(storage.web_login_rows().await.unwrap(), 1, "the claim");
    assert!(!identity_known(storage, "o1").await, "nothing else yet");

    let (outcome, ticket) = storage
        .complete_web_login(STATE, claimed, &login("wxoa", "o1", None, t0() + secs(1)))
        .await
        .unwrap()
        .expect("the claim is held");
    assert!(outcome.is_new_user);
    assert!(identity_known(storage, "o1").await);
    assert_eq!(
        storage
            .consume_ticket(ticket.expose_secret(), t0() + secs(2))
            .await
            .unwrap(),
        Some(Ticket {
            identity: IdentityRef {
                app_id: app("wxoa"),
                openid: openid("o1"),
            },
            is_new_user: true,
        })
    );
}

pub(crate) async fn a_repeat_within_the_window_gets_the_same_ticket_three_times_at_most(
    db: TestDb,
) {
    let storage = &db.storage;
    let claimed = claimed_at(claim_at(storage, Some("code-1"), t0()).await);
    let (_, ticket) = storage
        .complete_web_login(STATE, claimed, &login("wxoa", "o1", None, t0()))
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            claim_at(storage, Some("another-code"), t0() + secs(1)).await,
            WebLoginClaimed::Refused
        ),
        "the same state with another code"
    );
    for repeat in 1..=3 {
        assert_eq!(
            ticket_of(claim_at(storage, Some("code-1"), t0() + secs(repeat)).await),
            ticket.expose_secret(),
            "repeat {repeat} gets the first ticket"
        );
    }
    assert!(
        matches!(
            claim_at(storage, Some("code-1"), t0() + secs(5)).await,
            WebLoginClaimed::Refused
        ),
        "a fourth repeat"
    );
}

pub(crate) async fn a_repeat_after_the_window_is_refused_and_the_sweep_forgets_the_ticket(
    db: TestDb,
) {
    let storage = &db.storage;
    let claimed = claimed_at(claim_at(storage, Some("code-1"), t0()).await);
    storage
        .complete_web_login(STATE, claimed, &login("wxoa", "o1", None, t0()))
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        claim_at(storage, Some("code-1"), t0() + secs(31)).await,
        WebLoginClaimed::Refused
    ));

    let report = storage.sweep_expired(t0() + secs(31), 10).await.unwrap();
    assert_eq!(report.web_login_tickets, 1, "the ticket is forgotten");
    assert_eq!(report.web_logins, 0, "the state has not expired yet");
    assert!(matches!(
        claim_at(storage, Some("code-1"), t0() + secs(32)).await,
        WebLoginClaimed::Refused
    ));
    let report = storage.sweep_expired(t0() + secs(600), 10).await.unwrap();
    assert_eq!(report.web_logins, 1, "gone with its state");
    assert_eq!(storage.web_login_rows().await.unwrap(), 0);
}

pub(crate) async fn a_held_claim_makes_others_wait_and_a_dead_one_passes_on(db: TestDb) {
    let storage = &db.storage;
    let first = claimed_at(claim_at(storage, Some("code-1"), t0()).await);
    assert!(matches!(
        claim_at(storage, Some("code-1"), t0() + secs(1)).await,
        WebLoginClaimed::Pending
    ));
    // The first claimer died: after its claim expires another takes over.
    let second = claimed_at(claim_at(storage, Some("code-1"), t0() + secs(16)).await);
    assert_ne!(first, second);
    assert!(
        storage
            .complete_web_login(STATE, first, &login("wxoa", "late", None, t0() + secs(17)))
            .await
            .unwrap()
            .is_none(),
        "the first claimer no longer holds the claim"
    );
    assert!(
        !identity_known(storage, "late").await,
        "a completion without its claim writes nothing"
    );
    assert!(
        !storage
            .fail_web_login(STATE, first, "server_error", t0() + secs(17))
            .await
            .unwrap(),
        "nor can it fail the login"
    );
    let (_, ticket) = storage
        .complete_web_login(STATE, second, &login("wxoa", "o1", None, t0() + secs(18)))
        .await
        .unwrap()
        .expect("the second claimer holds it");
    assert_eq!(
        ticket_of(claim_at(storage, Some("code-1"), t0() + secs(19)).await),
        ticket.expose_secret()
    );
}

pub(crate) async fn declined_and_failed_logins_repeat_their_outcome(db: TestDb) {
    let storage = &db.storage;
    let failed = |outcome: WebLoginClaimed| match outcome {
        WebLoginClaimed::Answered(WebLoginOutcome::Failed(failure)) => failure,
        other => panic!("expected a failure, got {other:?}"),
    };
    assert_eq!(failed(claim_at(storage, None, t0()).await), "access_denied");
    assert_eq!(
        failed(claim_at(storage, None, t0() + secs(1)).await),
        "access_denied"
    );
    assert!(
        matches!(
            claim_at(storage, Some("code"), t0() + secs(2)).await,
            WebLoginClaimed::Refused
        ),
        "a declined state never becomes a login"
    );

    let other = WebLoginClaim {
        state_id: "1state000000000000000000000000002".into(),
        ..claim(Some("code-2"), t0())
    };
    let claimed = claimed_at(storage.claim_web_login(&other).await.unwrap());
    assert!(
        storage
            .fail_web_login(&other.state_id, claimed, "temporarily_unavailable", t0())
            .await
            .unwrap()
    );
    let repeat = WebLoginClaim {
        at: t0() + secs(2),
        ..other.clone()
    };
    assert_eq!(
        failed(storage.claim_web_login(&repeat).await.unwrap()),
        "temporarily_unavailable"
    );
    let foreign = WebLoginClaim {
        app_id: app("wxother"),
        ..repeat
    };
    assert!(
        matches!(
            storage.claim_web_login(&foreign).await.unwrap(),
            WebLoginClaimed::Refused
        ),
        "the same state for another app"
    );
}
