//! Profile epochs: 256 counters, one per shard of users, that move whenever a
//! profile in their shard changes (migration 0005's triggers bump them in the
//! changing transaction, whatever the statement).
//!
//! A replica that caches profiles tags each with its shard's epoch as last
//! polled and with this process's change count of that shard, both taken
//! *before* reading the profile, and trusts the entry only while both are
//! unchanged: a change committed on any replica after the read moves the
//! database's epoch (seen at the next poll); one committed here moves the
//! local count at once (the writes below call [`touched`]). The design and
//! its bounds are `session_epoch`'s, sharded so that writes to different users
//! do not queue on one row.

use std::sync::atomic::Ordering;

use crate::Storage;
use crate::changes;
use crate::db::{get_i64, get_string};
use crate::error::StorageError;
use crate::sql::query;
use crate::types::UserId;

/// How many profile shards there are: a user's shard is the last byte of its
/// id (the last two hex digits of its text form).
pub const PROFILE_SHARDS: usize = 256;

/// The profile shard of a user.
#[must_use]
pub fn profile_shard(user_id: &UserId) -> usize {
    usize::from(shard_byte(user_id))
}

fn shard_byte(user_id: &UserId) -> u8 {
    user_id.0.as_bytes()[15]
}

/// Notes, inside a `Storage::write` body, that `user_id`'s profile changes:
/// this process's count for its shard moves when the transaction commits.
/// (The database's epoch moves by trigger; this is for read-after-write on
/// this replica.)
pub(crate) fn touched(user_id: &UserId) {
    let shard = shard_byte(user_id);
    changes::note(|changes| changes.touch_profile_shard(shard));
}

impl Storage {
    /// Every shard's profile epoch, by shard: one read.
    ///
    /// # Errors
    /// Database errors; [`StorageError::Corrupt`] when a shard row is
    /// missing or misnamed.
    pub async fn profile_epochs(&self) -> Result<Vec<i64>, StorageError> {
        let rows = query("SELECT shard, value FROM profile_epoch")
            .fetch_all(self.reader())
            .await?;
        let mut epochs = vec![None; PROFILE_SHARDS];
        for row in &rows {
            let shard = get_string(row, "shard")?;
            let index = u8::from_str_radix(&shard, 16)
                .ok()
                .filter(|_| shard.len() == 2)
                .ok_or(StorageError::Corrupt("profile_epoch"))?;
            epochs[usize::from(index)] = Some(get_i64(row, "value")?);
        }
        epochs
            .into_iter()
            .collect::<Option<Vec<i64>>>()
            .ok_or(StorageError::Corrupt("profile_epoch"))
    }

    /// How many transactions that changed a profile of `shard` this process
    /// has committed; read it before reading a profile, like
    /// [`Storage::profile_epochs`].
    #[must_use]
    pub fn local_profile_changes(&self, shard: usize) -> u64 {
        self.inner.local_profile_changes[shard % PROFILE_SHARDS].load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_users_shard_is_the_last_two_hex_digits_of_its_id() {
        for _ in 0..100 {
            let user = UserId::generate();
            let text = user.to_string();
            let digits = &text[text.len() - 2..];
            assert_eq!(
                profile_shard(&user),
                usize::from_str_radix(digits, 16).expect("hex digits")
            );
        }
    }
}
