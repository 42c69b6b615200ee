//! The storage conformance suite: every test runs on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used)]

mod binding;
mod codes_and_tickets;
mod crypto;
mod logins;
mod maintenance;
mod profiles;
mod redis_cache;
mod rekey;
mod schema;
mod sessions;
mod support;
mod token_cache;
mod web_logins;

/// Generates `mod sqlite` and `mod postgres`, each with one `#[tokio::test]`
/// per listed test, handing it a fresh database of that engine.
macro_rules! conformance_tests {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(db) = crate::support::TestDb::sqlite().await {
                        crate::$module::$test(db).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    if let Some(db) = crate::support::TestDb::postgres().await {
                        crate::$module::$test(db).await;
                    }
                }
            )*
        }
    };
}

conformance_tests!(
    logins::first_login_creates_a_user_and_the_next_login_finds_it,
    logins::a_new_identity_with_a_known_unionid_joins_that_user,
    logins::an_identity_showing_its_unionid_later_merges_the_two_users,
    logins::merge_is_refused_when_both_users_hold_different_external_ids,
    logins::concurrent_first_logins_of_one_identity_create_one_user,
    logins::concurrent_first_logins_from_two_apps_with_one_unionid_create_one_user,
    logins::login_credentials_are_stored_encrypted_and_read_back,
    logins::concurrent_upgrades_to_one_unionid_merge_into_one_user,
    logins::concurrent_logins_with_sessions_each_get_their_users_session,
    logins::a_returning_login_with_a_session_keeps_every_rule_of_a_login,
    binding::binding_to_a_user_id_covers_every_case,
    binding::binding_to_an_external_id_covers_every_case,
    binding::a_trusted_import_creates_the_identity_on_the_account,
    binding::unbind_removes_the_identity_and_its_credentials,
    binding::a_duplicate_external_id_is_already_exists,
    binding::concurrent_binds_to_one_new_external_id_end_on_one_user,
    binding::a_bind_that_answers_an_error_committed_nothing,
    binding::an_unbind_that_answers_an_error_committed_nothing,
    sessions::rotation_issues_a_new_generation_and_reuse_revokes_the_session,
    sessions::concurrent_rotations_of_one_token_have_exactly_one_winner,
    sessions::sessions_expire_and_revoke,
    sessions::every_change_to_a_sessions_standing_moves_the_epoch,
    sessions::the_previous_token_within_the_grace_gets_a_new_pair_for_the_same_session,
    sessions::reuse_after_the_grace_or_of_an_older_token_revokes_the_session,
    sessions::concurrent_presentations_within_the_grace_leave_one_live_token,
    sessions::no_refresh_token_outlives_the_sessions_max_lifetime,
    codes_and_tickets::a_used_code_is_refused_on_replay,
    codes_and_tickets::a_ticket_is_single_use_and_expires,
    codes_and_tickets::a_ticket_is_spent_only_by_a_bind_that_commits,
    codes_and_tickets::a_ticket_redeemed_for_a_session_is_spent_with_it,
    web_logins::a_claimed_login_completes_with_its_login_and_ticket_together,
    web_logins::a_repeat_within_the_window_gets_the_same_ticket_three_times_at_most,
    web_logins::a_repeat_after_the_window_is_refused_and_the_sweep_forgets_the_ticket,
    web_logins::a_held_claim_makes_others_wait_and_a_dead_one_passes_on,
    web_logins::declined_and_failed_logins_repeat_their_outcome,
    token_cache::the_token_cache_round_trips_an_encrypted_token,
    token_cache::two_replicas_contend_for_one_lease,
    crypto::values_survive_key_rotation,
    crypto::a_wrong_key_is_a_clear_start_up_error,
    crypto::a_missing_key_is_an_error_naming_its_id,
    crypto::phones_are_found_by_their_hmac,
    rekey::rekey_moves_every_value_to_the_current_key_so_the_retired_one_can_go,
    rekey::an_interrupted_rekey_resumes_where_it_stopped,
    rekey::rekey_leaves_what_it_cannot_read_and_key_usage_names_every_key_id,
    maintenance::sweep_removes_expired_rows_only,
    maintenance::no_migration_is_pending_after_migrate_and_every_one_on_an_empty_database,
    maintenance::signing_keys_insert_race_safely,
    maintenance::replicas_racing_for_the_first_signing_key_end_with_one,
    maintenance::the_audit_trail_records_bind_unbind_merge_and_revoke,
    profiles::every_profile_change_moves_its_users_shard,
    profiles::a_change_to_any_users_column_moves_the_epoch,
);

/// `sqlite::memory:` opens a new database per connection: the storage must
/// then read through its single writer connection, or reads see nothing.
#[tokio::test]
async fn an_in_memory_sqlite_database_reads_its_own_writes() {
    let config = storage::StorageConfig::new("sqlite::memory:");
    let key = ("k1".to_owned(), storage::KeyRing::generate_key());
    let storage = storage::Storage::connect(&config, support::key_ring(&key))
        .await
        .unwrap();
    storage.migrate().await.unwrap();
    storage.verify_keys().await.unwrap();
    let user = support::new_user(&storage, "wxa", "o1").await;
    let found = storage
        .profile(&storage::UserLookup::UserId(user))
        .await
        .unwrap();
    assert!(found.is_some());
    assert_eq!(storage.engine(), storage::Engine::Sqlite);
    storage.ping().await.unwrap();
}

/// The SQLite file runs in WAL mode: a write leaves a `-wal` file beside it.
#[tokio::test]
async fn a_sqlite_file_database_runs_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wal.db");
    let config = storage::StorageConfig::new(format!("sqlite://{}", path.display()));
    let key = ("k1".to_owned(), storage::KeyRing::generate_key());
    let storage = storage::Storage::connect(&config, support::key_ring(&key))
        .await
        .unwrap();
    storage.migrate().await.unwrap();
    support::new_user(&storage, "wxa", "o1").await;
    assert!(dir.path().join("wal.db-wal").exists());
    storage.close().await;
}
