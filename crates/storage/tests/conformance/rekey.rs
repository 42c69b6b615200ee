//! Key rotation to the end: `rekey` moves every value at rest to the current
//! key, so the retired key can leave the ring; it resumes after a stop, skips
//! what it cannot read, and `key_usage` counts what each key protects.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{AnyConnection, Connection};
use storage::{
    AppKind, KeyRing, Phone, RekeyOptions, RekeyProgress, Storage, UserId, UserLookup,
    WebLoginClaim, WebLoginClaimed, WebLoginOutcome, WebTokens,
};
use wechat_types::{AccessToken, CachedToken, ForceRefreshBudget};

use crate::support::{TestDb, app, login, openid, secs, t0};

/// Every kind of encrypted value: key material (written at first start),
/// the signing key, and per user `i` a phone, a mini program session key,
/// web access and refresh tokens; plus one app token and the ticket a browser
/// login keeps for WeChat's repeated callback.
const KINDS_PER_USER: u64 = 4;
const FIXED_VALUES: u64 = 4;

/// The browser login whose ticket is kept.
fn web_login_claim(at: std::time::SystemTime) -> WebLoginClaim {
    WebLoginClaim {
        state_id: "1rekey0000000000000000000000000000".into(),
        app_id: app("wxoa"),
        code: Some("oauth-code".into()),
        state_expires_at: t0() + secs(600),
        claim_ttl: secs(15),
        at,
    }
}

fn phone(i: u32) -> Phone {
    Phone {
        phone_number: format!("+86 1380000000{i}"),
        pure_phone_number: format!("1380000000{i}"),
        country_code: "86".into(),
    }
}

async fn write_every_kind(storage: &Storage, users: u32) -> Vec<UserId> {
    let mut ids = Vec::new();
    for i in 0..users {
        let mut mini = login("wxmini", &format!("m{i}"), Some(&format!("u{i}")), t0());
        mini.session_key = Some(SecretString::from(format!("session-key-{i}")));
        let user = storage.record_login(&mini).await.unwrap().user_id;
        let mut web = login(
            "wxoa",
            &format!("w{i}"),
            Some(&format!("u{i}")),
            t0() + secs(1),
        );
        web.app_kind = AppKind::OfficialAccount;
        web.scope = Some("snsapi_userinfo".into());
        web.web_tokens = Some(WebTokens {
            access_token: SecretString::from(format!("web-access-{i}")),
            access_expires_at: t0() + secs(7200),
            refresh_token: SecretString::from(format!("web-refresh-{i}")),
            refresh_expires_at: t0() + secs(30 * 86_400),
            scope: "snsapi_userinfo".into(),
        });
        assert_eq!(storage.record_login(&web).await.unwrap().user_id, user);
        storage.set_phone(&user, &phone(i), t0()).await.unwrap();
        ids.push(user);
    }
    storage
        .token_cache()
        .store(
            &app("wxmini"),
            &CachedToken {
                access_token: AccessToken::new("APP-ACCESS-TOKEN"),
                expires_at: t0() + secs(7200),
                fetched_at: t0(),
                force_budget: ForceRefreshBudget::default(),
            },
        )
        .await
        .unwrap();
    storage
        .insert_signing_key("kid-1", b"signing-private-key", "{}", t0())
        .await
        .unwrap();
    let WebLoginClaimed::Claimed { claimed_at } = storage
        .claim_web_login(&web_login_claim(t0()))
        .await
        .unwrap()
    else {
        panic!("a fresh state is claimed");
    };
    let mut browser = login("wxoa", "browser", None, t0());
    browser.app_kind = AppKind::OfficialAccount;
    storage
        .complete_web_login(&web_login_claim(t0()).state_id, claimed_at, &browser)
        .await
        .unwrap()
        .unwrap();
    ids
}

/// Reads every kind back, each through its own decrypting path.
async fn read_every_kind(storage: &Storage, users: &[UserId]) {
    storage.verify_keys().await.unwrap();
    for (i, user) in users.iter().enumerate() {
        let key = storage
            .session_key(&app("wxmini"), &openid(&format!("m{i}")))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(key.expose_secret(), format!("session-key-{i}"));
        let web = storage
            .latest_web_authorization(user)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            web.tokens.access_token.expose_secret(),
            format!("web-access-{i}")
        );
        assert_eq!(
            web.tokens.refresh_token.expose_secret(),
            format!("web-refresh-{i}")
        );
        let profile = storage
            .profile(&UserLookup::UserId(*user))
            .await
            .unwrap()
            .unwrap();
        let i = u32::try_from(i).unwrap();
        assert_eq!(profile.phone, Some(phone(i)));
        assert_eq!(
            storage
                .user_by_phone(&phone(i).pure_phone_number, "86")
                .await
                .unwrap(),
            vec![*user],
            "the lookup hash survives"
        );
    }
    let token = storage
        .token_cache()
        .load(&app("wxmini"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(token.access_token, AccessToken::new("APP-ACCESS-TOKEN"));
    let repeat = storage
        .claim_web_login(&web_login_claim(t0() + secs(2)))
        .await
        .unwrap();
    let WebLoginClaimed::Answered(WebLoginOutcome::Ticket(ticket)) = repeat else {
        panic!("the kept ticket answers the repeat: {repeat:?}");
    };
    assert!(
        storage
            .consume_ticket(ticket.expose_secret(), t0() + secs(3))
            .await
            .unwrap()
            .is_some(),
        "the kept ticket decrypts to the real one"
    );
    let signing = storage.active_signing_keys().await.unwrap();
    assert_eq!(signing.len(), 1);
    assert_eq!(
        signing[0].private_key.expose_secret().as_slice(),
        b"signing-private-key"
    );
}

fn new_key(id: &str) -> (String, SecretString) {
    (id.to_owned(), KeyRing::generate_key())
}

pub(crate) async fn rekey_moves_every_value_to_the_current_key_so_the_retired_one_can_go(
    db: TestDb,
) {
    let users = write_every_kind(&db.storage, 2).await;
    let total = FIXED_VALUES + KINDS_PER_USER * 2;
    let before = db.storage.key_usage(3).await.unwrap();
    assert_eq!(before.count("k1"), total, "{before:?}");

    let k2 = new_key("k2");
    let rotated = db
        .connect_again(KeyRing::new(k2.clone(), vec![db.key.clone()]).unwrap())
        .await
        .unwrap();
    let mut lines = Vec::new();
    let report = rotated
        .rekey(&RekeyOptions::default(), |progress: &RekeyProgress| {
            lines.push(progress.clone());
        })
        .await
        .unwrap();
    assert!(report.finished);
    assert_eq!(report.rekeyed(), total, "{report:?}");
    assert_eq!(report.unreadable(), 0);
    assert!(
        lines.iter().any(|p| p.column == "users.phone_ciphertext"),
        "a progress line per batch and column: {lines:?}"
    );
    let after = rotated.key_usage(500).await.unwrap();
    assert_eq!(after.count("k1"), 0, "{after:?}");
    assert_eq!(after.count("k2"), total);
    assert_eq!(after.malformed, 0);

    let again = rotated
        .rekey(&RekeyOptions::default(), |_: &RekeyProgress| {})
        .await
        .unwrap();
    assert_eq!(again.rekeyed(), 0, "nothing left to do: {again:?}");

    // The retired key leaves the ring: every kind still reads.
    let only_k2 = db
        .connect_again(KeyRing::new(k2, vec![]).unwrap())
        .await
        .unwrap();
    read_every_kind(&only_k2, &users).await;
}

pub(crate) async fn an_interrupted_rekey_resumes_where_it_stopped(db: TestDb) {
    let users = write_every_kind(&db.storage, 3).await;
    let total = FIXED_VALUES + KINDS_PER_USER * 3;
    let k2 = new_key("k2");
    let rotated = db
        .connect_again(KeyRing::new(k2.clone(), vec![db.key.clone()]).unwrap())
        .await
        .unwrap();
    let stopped_after = 4;
    let mut batches = 0;
    let first = rotated
        .rekey(
            &RekeyOptions {
                batch_size: 1,
                max_batches: Some(stopped_after),
            },
            |_: &RekeyProgress| batches += 1,
        )
        .await
        .unwrap();
    assert!(!first.finished, "{first:?}");
    assert_eq!(batches, stopped_after);
    assert!(first.rekeyed() >= 1 && first.rekeyed() < total, "{first:?}");
    let midway = rotated.key_usage(2).await.unwrap();
    assert_eq!(midway.count("k2"), first.rekeyed(), "{midway:?}");
    assert_eq!(midway.count("k1"), total - first.rekeyed());

    // Running again finishes the job, touching only what was left.
    let second = rotated
        .rekey(
            &RekeyOptions {
                batch_size: 2,
                max_batches: None,
            },
            |_: &RekeyProgress| {},
        )
        .await
        .unwrap();
    assert!(second.finished);
    assert_eq!(second.rekeyed(), total - first.rekeyed(), "{second:?}");
    let done = rotated.key_usage(500).await.unwrap();
    assert_eq!(done.count("k1"), 0, "{done:?}");
    let only_k2 = db
        .connect_again(KeyRing::new(k2, vec![]).unwrap())
        .await
        .unwrap();
    read_every_kind(&only_k2, &users).await;
}

pub(crate) async fn rekey_leaves_what_it_cannot_read_and_key_usage_names_every_key_id(db: TestDb) {
    let users = write_every_kind(&db.storage, 2).await;
    let total = FIXED_VALUES + KINDS_PER_USER * 2;
    // One phone damaged at rest, one written under a key later forgotten.
    let mut conn = AnyConnection::connect(&db.config.url).await.unwrap();
    let sealed: Vec<u8> =
        sqlx::query_scalar("SELECT phone_ciphertext FROM users WHERE user_id = $1")
            .bind(users[0].to_string())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let mut damaged = sealed.clone();
    *damaged.last_mut().unwrap() ^= 0xff;
    sqlx::query("UPDATE users SET phone_ciphertext = $1 WHERE user_id = $2")
        .bind(damaged)
        .bind(users[0].to_string())
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let forgotten = db
        .connect_again(KeyRing::new(new_key("k0"), vec![db.key.clone()]).unwrap())
        .await
        .unwrap();
    forgotten
        .set_phone(&users[1], &phone(7), t0())
        .await
        .unwrap();

    let usage = db.storage.key_usage(500).await.unwrap();
    assert_eq!(usage.count("k1"), total - 1, "{usage:?}");
    assert_eq!(
        usage.count("k0"),
        1,
        "an id outside the ring is still counted"
    );
    assert_eq!(usage.by_key.len(), 2);

    let k2 = new_key("k2");
    let rotated = db
        .connect_again(KeyRing::new(k2, vec![db.key.clone()]).unwrap())
        .await
        .unwrap();
    let report = rotated
        .rekey(&RekeyOptions::default(), |_: &RekeyProgress| {})
        .await
        .unwrap();
    assert!(report.finished, "the run goes on past them");
    assert_eq!(report.unreadable(), 2, "{report:?}");
    assert_eq!(report.rekeyed(), total - 2);
    let after = rotated.key_usage(500).await.unwrap();
    assert_eq!(after.count("k1"), 1, "the damaged value stays: {after:?}");
    assert_eq!(after.count("k0"), 1);
    assert_eq!(after.count("k2"), total - 2);
}
