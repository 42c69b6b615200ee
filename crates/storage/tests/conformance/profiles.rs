//! The profile epochs that GetProfile's per-replica cache trusts: every change
//! to a profile moves its user's shard, in the database (by trigger) and in the
//! process that committed it; a login that changes nothing in a profile moves
//! neither.

use std::time::SystemTime;

use sqlx::{Connection, PgConnection, SqliteConnection};
use storage::{
    Account, BindRequest, IdentityRef, Phone, ProfileFields, Storage, UserId, UserLookup,
    profile_shard,
};

use crate::support::{TestDb, app, key_ring, login, new_user, openid, secs, t0};

/// A user's shard: its database epoch and this process's change count.
async fn shard_of(storage: &Storage, user: &UserId) -> (i64, u64) {
    let shard = profile_shard(user);
    let epochs = storage.profile_epochs().await.unwrap();
    (epochs[shard], storage.local_profile_changes(shard))
}

/// Asserts that `change` moved `user`'s shard in the database and, when
/// `here`, in this process; returns what it returned.
async fn moves<T>(
    storage: &Storage,
    user: &UserId,
    here: bool,
    what: &str,
    change: impl std::future::Future<Output = T>,
) -> T {
    let (database, local) = shard_of(storage, user).await;
    let output = change.await;
    let (database_after, local_after) = shard_of(storage, user).await;
    assert!(
        database_after > database,
        "{what}: the database epoch did not move"
    );
    assert_eq!(local_after > local, here, "{what}: this process's count");
    output
}

fn phone(number: &str) -> Phone {
    Phone {
        phone_number: number.into(),
        pure_phone_number: number.into(),
        country_code: "86".into(),
    }
}

fn identity(app_id: &str, open_id: &str) -> IdentityRef {
    IdentityRef {
        app_id: app(app_id),
        openid: openid(open_id),
    }
}

pub(crate) async fn every_profile_change_moves_its_users_shard(db: TestDb) {
    let storage = &db.storage;
    let replica = db.connect_again(key_ring(&db.key)).await.unwrap();
    let user = new_user(storage, "wxa", "o1").await;
    assert!(
        storage
            .profile_epochs()
            .await
            .unwrap()
            .iter()
            .any(|&e| e > 0)
    );

    // A login that changes nothing in the profile (last_login_at only).
    let before = shard_of(storage, &user).await;
    storage
        .record_login(&login("wxa", "o1", None, t0() + secs(60)))
        .await
        .unwrap();
    assert_eq!(shard_of(storage, &user).await, before, "a repeat login");

    let at = || t0() + secs(120);
    moves(
        storage,
        &user,
        true,
        "a phone",
        storage.set_phone(&user, &phone("13800000000"), at()),
    )
    .await
    .unwrap();
    moves(storage, &user, true, "an external id", async {
        storage
            .set_external_id(&user, Some("acct-1"), "t", at())
            .await
    })
    .await
    .unwrap();
    let fields = ProfileFields {
        nickname: "Ann".into(),
        ..ProfileFields::default()
    };
    moves(
        storage,
        &user,
        true,
        "a profile",
        storage.update_profile(&user, &fields, at()),
    )
    .await
    .unwrap();
    moves(storage, &user, true, "a userinfo login", async {
        let mut with_profile = login("wxa", "o1", None, t0() + secs(180));
        with_profile.profile = Some(ProfileFields {
            nickname: "Bea".into(),
            ..ProfileFields::default()
        });
        storage.record_login(&with_profile).await
    })
    .await
    .unwrap();
    moves(storage, &user, true, "a first unionid", async {
        storage
            .record_login(&login("wxa", "o1", Some("u1"), t0() + secs(240)))
            .await
    })
    .await
    .unwrap();
    moves(storage, &user, true, "a new identity", async {
        storage
            .record_login(&login("wxb", "o2", Some("u1"), t0() + secs(300)))
            .await
    })
    .await
    .unwrap();

    // A bind that moves an identity moves both users' shards.
    let other = new_user(storage, "wxa", "o3").await;
    let bind = BindRequest {
        identity: identity("wxa", "o3"),
        import: None,
        account: Account::UserId(user),
        replace_existing: true,
        actor: "t".into(),
        at: at(),
    };
    let (other_before, _) = shard_of(storage, &other).await;
    moves(storage, &user, true, "a bind", storage.bind(&bind))
        .await
        .unwrap();
    assert!(
        shard_of(storage, &other).await.0 > other_before,
        "the old owner's shard"
    );
    moves(storage, &user, true, "an unbind", async {
        storage.unbind(&identity("wxa", "o3"), "t", at()).await
    })
    .await
    .unwrap();

    // A merge moves the absorbed user's shard, and it stops resolving.
    let absorbed = new_user(storage, "wxc", "o4").await;
    moves(storage, &absorbed, true, "a merge", async {
        storage
            .record_login(&login("wxc", "o4", Some("u1"), t0() + secs(360)))
            .await
    })
    .await
    .unwrap();
    let gone = storage
        .profile(&UserLookup::UserId(absorbed))
        .await
        .unwrap();
    assert!(gone.is_none(), "the absorbed user still resolves");

    // Another replica's change moves the database only.
    moves(storage, &user, false, "a change elsewhere", async {
        replica.set_phone(&user, &phone("13900000000"), at()).await
    })
    .await
    .unwrap();
}

/// Each column of `users`, changed alone by hand, moves its shard: a column
/// added later without the SQLite trigger's WHEN learning it fails here.
pub(crate) async fn a_change_to_any_users_column_moves_the_epoch(db: TestDb) {
    let storage = &db.storage;
    let user = new_user(storage, "wxa", "o1").await;
    storage
        .set_phone(&user, &phone("13800000000"), SystemTime::now())
        .await
        .unwrap();
    let postgres = db.config.url.starts_with("postgres");
    let columns: Vec<(String, String)> = if postgres {
        let mut conn = PgConnection::connect(&db.config.url).await.unwrap();
        sqlx::query_as(
            "SELECT column_name::text, data_type::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = 'users'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    } else {
        let mut conn = SqliteConnection::connect(&db.config.url).await.unwrap();
        sqlx::query_as("SELECT name, type FROM pragma_table_info('users')")
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    assert!(columns.len() > 10, "{columns:?}");
    for (column, kind) in columns {
        if column == "user_id" {
            continue;
        }
        let kind = kind.to_lowercase();
        let value = if column == "sex" {
            format!("({column} + 1) % 3")
        } else if kind.contains("int") {
            format!("COALESCE({column}, 0) + 1")
        } else if kind.contains("text") {
            format!("COALESCE({column}, '') || 'x'")
        } else if postgres {
            format!("'\\x{:02x}'::bytea", column.len())
        } else {
            format!("X'{:02x}'", column.len())
        };
        let statement = format!("UPDATE users SET {column} = {value} WHERE user_id = $1");
        let before = shard_of(storage, &user).await.0;
        if postgres {
            let mut conn = PgConnection::connect(&db.config.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .bind(user.to_string())
                .execute(&mut conn)
                .await
                .unwrap();
        } else {
            let mut conn = SqliteConnection::connect(&db.config.url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(statement.replace("$1", "?1")))
                .bind(user.to_string())
                .execute(&mut conn)
                .await
                .unwrap();
        }
        assert!(
            shard_of(storage, &user).await.0 > before,
            "{statement}: the profile epoch did not move"
        );
    }
}
