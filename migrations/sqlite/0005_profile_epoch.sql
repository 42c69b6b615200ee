-- Profile epochs: 256 counters, one per shard of users (a shard is the last
-- two hex digits of a user_id). A trigger bumps the shard of every user whose
-- profile a statement changes (its users row, or an identity linked to it:
-- inserted, deleted, moved to another user, or given a unionid), in the same
-- transaction. Replicas cache GetProfile answers tagged with their shard's
-- epoch and drop them when they see it move, so a change anywhere reaches
-- every replica within one poll. Sharded so that writes to different users
-- do not queue on one row; triggers so that no write path can forget it.
-- A column added to users must be added to users_profile_epoch_update's WHEN
-- (the conformance test `every_profile_change_moves_its_shards_epoch` fails
-- otherwise).
CREATE TABLE profile_epoch (
    shard TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 255)
INSERT INTO profile_epoch (shard, value) SELECT printf('%02x', i), 0 FROM n;

CREATE TRIGGER users_profile_epoch_insert AFTER INSERT ON users BEGIN
    UPDATE profile_epoch SET value = value + 1 WHERE shard = substr(NEW.user_id, -2);
END;
CREATE TRIGGER users_profile_epoch_delete AFTER DELETE ON users BEGIN
    UPDATE profile_epoch SET value = value + 1 WHERE shard = substr(OLD.user_id, -2);
END;
CREATE TRIGGER users_profile_epoch_update AFTER UPDATE ON users
    WHEN OLD.user_id IS NOT NEW.user_id
      OR OLD.external_id IS NOT NEW.external_id
      OR OLD.nickname IS NOT NEW.nickname
      OR OLD.avatar_url IS NOT NEW.avatar_url
      OR OLD.sex IS NOT NEW.sex
      OR OLD.province IS NOT NEW.province
      OR OLD.city IS NOT NEW.city
      OR OLD.country IS NOT NEW.country
      OR OLD.privileges IS NOT NEW.privileges
      OR OLD.profile_updated_at IS NOT NEW.profile_updated_at
      OR OLD.phone_ciphertext IS NOT NEW.phone_ciphertext
      OR OLD.phone_hash IS NOT NEW.phone_hash
      OR OLD.phone_updated_at IS NOT NEW.phone_updated_at
      OR OLD.created_at IS NOT NEW.created_at
      OR OLD.updated_at IS NOT NEW.updated_at
BEGIN
    UPDATE profile_epoch SET value = value + 1
     WHERE shard IN (substr(OLD.user_id, -2), substr(NEW.user_id, -2));
END;

CREATE TRIGGER identities_profile_epoch_insert AFTER INSERT ON identities BEGIN
    UPDATE profile_epoch SET value = value + 1 WHERE shard = substr(NEW.user_id, -2);
END;
CREATE TRIGGER identities_profile_epoch_delete AFTER DELETE ON identities BEGIN
    UPDATE profile_epoch SET value = value + 1 WHERE shard = substr(OLD.user_id, -2);
END;
-- A login's update of last_login_at, scope or is_snapshot is not in a profile:
-- naming the columns keeps the trigger out of that statement altogether.
CREATE TRIGGER identities_profile_epoch_update
    AFTER UPDATE OF user_id, unionid, app_kind, linked_at, openid, app_id ON identities
    WHEN OLD.user_id IS NOT NEW.user_id
      OR OLD.unionid IS NOT NEW.unionid
      OR OLD.app_kind IS NOT NEW.app_kind
      OR OLD.linked_at IS NOT NEW.linked_at
      OR OLD.openid IS NOT NEW.openid
      OR OLD.app_id IS NOT NEW.app_id
BEGIN
    UPDATE profile_epoch SET value = value + 1
     WHERE shard IN (substr(OLD.user_id, -2), substr(NEW.user_id, -2));
END;
