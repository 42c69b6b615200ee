use secrecy::{ExposeSecret, SecretString};
use storage::{Entity, KeyRing, Phone, Storage, StorageError, UserLookup};

use crate::support::{TestDb, app, key_ring, login, new_user, openid, t0};

fn phone(number: &str) -> Phone {
    Phone {
        phone_number: format!("+86 {number}"),
        pure_phone_number: number.into(),
        country_code: "86".into(),
    }
}

async fn reopen(db: &TestDb, keys: KeyRing) -> Result<Storage, StorageError> {
    let storage = db.connect_again(keys).await?;
    storage.verify_keys().await?;
    Ok(storage)
}

pub(crate) async fn values_survive_key_rotation(db: TestDb) {
    let mut first = login("wxa", "o1", None, t0());
    first.session_key = Some(SecretString::from("b2xkLWtleQ=="));
    let user = db.storage.record_login(&first).await.unwrap().user_id;
    db.storage
        .set_phone(&user, &phone("13800000001"), t0())
        .await
        .unwrap();

    let second_key = ("k2".to_owned(), KeyRing::generate_key());
    let rotated = KeyRing::new(second_key.clone(), vec![db.key.clone()]).unwrap();
    assert_eq!(rotated.current_key_id(), "k2");
    let storage = reopen(&db, rotated).await.unwrap();
    assert_eq!(
        storage
            .session_key(&app("wxa"), &openid("o1"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "b2xkLWtleQ=="
    );
    let profile = storage
        .profile(&UserLookup::UserId(user))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.phone, Some(phone("13800000001")));
    assert_eq!(
        storage.user_by_phone("13800000001", "86").await.unwrap(),
        vec![user],
        "lookup hash unchanged"
    );

    // New values use the new key: without the old key they still read.
    let mut again = login("wxa", "o2", None, t0());
    again.session_key = Some(SecretString::from("bmV3LWtleQ=="));
    storage.record_login(&again).await.unwrap();
    let only_new = db
        .connect_again(KeyRing::new(second_key, vec![]).unwrap())
        .await
        .unwrap();
    assert_eq!(
        only_new
            .session_key(&app("wxa"), &openid("o2"))
            .await
            .unwrap()
            .unwrap()
            .expose_secret(),
        "bmV3LWtleQ=="
    );
    assert!(matches!(
        only_new.session_key(&app("wxa"), &openid("o1")).await,
        Err(StorageError::Keys(_))
    ));
}

pub(crate) async fn a_wrong_key_is_a_clear_start_up_error(db: TestDb) {
    let wrong = KeyRing::new((db.key.0.clone(), KeyRing::generate_key()), vec![]).unwrap();
    let error = reopen(&db, wrong).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("encryption key does not match the data"),
        "{error}"
    );
    let right = reopen(&db, key_ring(&db.key)).await;
    assert!(right.is_ok());
}

pub(crate) async fn a_missing_key_is_an_error_naming_its_id(db: TestDb) {
    let other = KeyRing::new(("k9".to_owned(), KeyRing::generate_key()), vec![]).unwrap();
    let error = reopen(&db, other).await.unwrap_err();
    assert!(matches!(error, StorageError::Keys(_)));
    assert!(error.to_string().contains("\"k1\""), "{error}");
}

pub(crate) async fn phones_are_found_by_their_hmac(db: TestDb) {
    let storage = &db.storage;
    let a = new_user(storage, "wxa", "o1").await;
    let b = new_user(storage, "wxa", "o2").await;
    storage
        .set_phone(&a, &phone("13800000001"), t0())
        .await
        .unwrap();
    storage
        .set_phone(&b, &phone("13800000002"), t0())
        .await
        .unwrap();
    assert_eq!(
        storage.user_by_phone("13800000001", "86").await.unwrap(),
        vec![a]
    );
    assert_eq!(
        storage.user_by_phone("13800000001", "+86").await.unwrap(),
        vec![a]
    );
    assert!(
        storage
            .user_by_phone("13800000003", "86")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!format!("{:?}", phone("13800000001")).contains("13800000001"));
    assert!(matches!(
        storage
            .set_phone(&storage::UserId::generate(), &phone("1"), t0())
            .await,
        Err(StorageError::NotFound(Entity::User))
    ));
}
