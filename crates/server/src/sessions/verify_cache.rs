//! VerifyToken from memory, without giving up revocation.
//!
//! Two things make a VerifyToken call expensive: the Ed25519 signature check
//! and the read of the session (is it revoked?). This cache keeps both:
//!
//! - A token whose signature checked out once is known by its SHA-256; only
//!   tokens that verified are ever stored, and their expiry is checked on
//!   every hit.
//! - The session's standing (active, and for which user; or not) is stored
//!   with the tag it was read under: the database's session epoch as last
//!   polled, and this process's count of session changes, both taken *before*
//!   the read. Every revocation or merge moves one of them (see
//!   `storage::Storage::session_epoch`), so a standing is trusted only while
//!   its tag is current and the last poll started less than
//!   `revocation_propagation` ago. A session revoked on another replica stops
//!   verifying here within that bound; one revoked here, at once. When the
//!   database cannot be polled the cache stops vouching, and every call reads
//!   the session (and fails as the database does).
//!
//! Memory is bounded by a [`GenerationMap`].

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use storage::{SessionId, Storage, StorageError, UserId};

use super::jwt::{Claims, MAX_TOKEN_LEN, Rejection, TokenKeys};
use crate::generation_map::GenerationMap;

/// What VerifyToken answers.
#[derive(Debug, Clone)]
pub(crate) enum Verdict {
    /// The token verifies and its session is live; `user_id` is the session's
    /// current owner (a merge may have moved it off the token's `sub`).
    Active {
        /// The token's claims.
        claims: Arc<Claims>,
        /// Who the session belongs to now.
        user_id: UserId,
    },
    /// Not a live token; the reason is for logs only.
    Inactive(&'static str),
}

/// How a verdict was reached, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lookup {
    /// From memory: no signature check, no read.
    Memory,
    /// The signature was known; the session was read.
    SessionRead,
    /// The signature was checked and the session read.
    Verified,
    /// The token did not verify (or its cached entry had expired).
    Rejected,
}

impl Lookup {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Lookup::Memory => "memory",
            Lookup::SessionRead => "session_read",
            Lookup::Verified => "verified",
            Lookup::Rejected => "rejected",
        }
    }
}

/// The VerifyToken cache of one process.
#[derive(Debug)]
pub(crate) struct VerifyCache {
    storage: Storage,
    entries: GenerationMap<[u8; 32], Entry>,
    propagation: Duration,
    polled: Mutex<Option<Polled>>,
}

#[derive(Debug, Clone)]
struct Entry {
    claims: Arc<Claims>,
    standing: Option<(Tag, Standing)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    database: i64,
    local: u64,
}

#[derive(Debug, Clone, Copy)]
struct Polled {
    value: i64,
    started: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Standing {
    Active(UserId),
    Inactive,
}

impl VerifyCache {
    /// A cache of at most `entries` tokens whose session standings are trusted
    /// for at most `propagation` after the last poll of the session epoch
    /// (zero: never, every call reads the session).
    pub(crate) fn new(storage: Storage, entries: usize, propagation: Duration) -> Self {
        Self {
            storage,
            entries: GenerationMap::new(entries),
            propagation,
            polled: Mutex::new(None),
        }
    }

    /// Verifies `token` at `now`: its signature and claims (from memory when it
    /// verified before), then its session's standing (from memory while the
    /// epoch says nothing changed, else from the database).
    ///
    /// # Errors
    /// The session could not be read.
    pub(crate) async fn verify(
        &self,
        keys: &TokenKeys,
        token: &str,
        now: SystemTime,
    ) -> Result<(Verdict, Lookup), StorageError> {
        if token.len() > MAX_TOKEN_LEN {
            // Not worth hashing: no token this service signs is that long.
            return Ok((
                Verdict::Inactive(Rejection::Malformed.as_str()),
                Lookup::Rejected,
            ));
        }
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let (claims, standing, lookup) = match self.entries.get(&key) {
            Some(entry) if entry.claims.exp > now_secs => {
                (entry.claims, entry.standing, Lookup::SessionRead)
            }
            Some(_) => {
                self.entries.remove(&key);
                return Ok((
                    Verdict::Inactive(Rejection::Time.as_str()),
                    Lookup::Rejected,
                ));
            }
            None => match keys.verify(token, now) {
                Ok(claims) => (Arc::new(claims), None, Lookup::Verified),
                Err(rejection) => {
                    return Ok((Verdict::Inactive(rejection.as_str()), Lookup::Rejected));
                }
            },
        };
        let tag = self.current_tag();
        if let (Some((held, standing)), Some(tag)) = (standing, tag)
            && held == tag
        {
            return Ok((verdict(claims, standing), Lookup::Memory));
        }
        let Ok(session_id) = SessionId::from_str(&claims.sid) else {
            return Ok((Verdict::Inactive("malformed session id"), Lookup::Rejected));
        };
        let standing = match self.storage.session(&session_id).await? {
            Some(session) if session.revoked_at.is_none() => Standing::Active(session.user_id),
            _ => Standing::Inactive,
        };
        self.entries.insert(
            key,
            Entry {
                claims: claims.clone(),
                standing: tag.map(|tag| (tag, standing)),
            },
        );
        Ok((verdict(claims, standing), lookup))
    }

    /// Polls the session epoch every quarter of `propagation`, for as long as
    /// the service runs. Does nothing when standings are never trusted.
    pub(crate) async fn follow_epoch(self: Arc<Self>) {
        if self.propagation.is_zero() || !self.entries.keeps_anything() {
            return;
        }
        let every = (self.propagation / 4).max(Duration::from_millis(5));
        loop {
            let started = Instant::now();
            match self.storage.session_epoch().await {
                Ok(value) => {
                    if let Ok(mut polled) = self.polled.lock() {
                        *polled = Some(Polled { value, started });
                    }
                }
                Err(error) => tracing::debug!(%error, "session epoch poll failed"),
            }
            tokio::time::sleep(every.saturating_sub(started.elapsed())).await;
        }
    }

    /// The tag a standing read now would get, or `None` when the last poll is
    /// too old to vouch for anything.
    fn current_tag(&self) -> Option<Tag> {
        let polled = (*self.polled.lock().ok()?)?;
        // The local count is read after the poll value and before any session
        // read that uses the tag, which is the order correctness needs.
        (polled.started.elapsed() < self.propagation).then(|| Tag {
            database: polled.value,
            local: self.storage.local_session_changes(),
        })
    }

    /// Entries held now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }
}

fn verdict(claims: Arc<Claims>, standing: Standing) -> Verdict {
    match standing {
        Standing::Active(user_id) => Verdict::Active { claims, user_id },
        Standing::Inactive => Verdict::Inactive("session revoked or unknown"),
    }
}

#[cfg(test)]
mod tests;
