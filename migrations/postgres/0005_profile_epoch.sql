-- Profile epochs: 256 counters, one per shard of users (a shard is the last
-- two hex digits of a user_id). A trigger bumps the shard of every user whose
-- profile a statement changes (its users row, or an identity linked to it:
-- inserted, deleted, moved to another user, or given a unionid), in the same
-- transaction. Replicas cache GetProfile answers tagged with their shard's
-- epoch and drop them when they see it move, so a change anywhere reaches
-- every replica within one poll. Sharded so that writes to different users
-- do not queue on one row; triggers so that no write path can forget it.
CREATE TABLE profile_epoch (
    shard TEXT   PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO profile_epoch (shard, value)
    SELECT lpad(to_hex(n), 2, '0'), 0 FROM generate_series(0, 255) AS n;

CREATE FUNCTION profile_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- OLD is NULL on INSERT and NEW on DELETE; IN ignores the NULL.
    UPDATE profile_epoch SET value = value + 1
     WHERE shard IN (right(OLD.user_id, 2), right(NEW.user_id, 2));
    RETURN NULL;
END
$$;

CREATE TRIGGER users_profile_epoch_write AFTER INSERT OR DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION profile_epoch_bump();
CREATE TRIGGER users_profile_epoch_update AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*)
    EXECUTE FUNCTION profile_epoch_bump();

CREATE TRIGGER identities_profile_epoch_write AFTER INSERT OR DELETE ON identities
    FOR EACH ROW EXECUTE FUNCTION profile_epoch_bump();
-- A login's update of last_login_at, scope or is_snapshot is not in a profile:
-- naming the columns keeps the trigger out of that statement altogether.
CREATE TRIGGER identities_profile_epoch_update
    AFTER UPDATE OF user_id, unionid, app_kind, linked_at, openid, app_id ON identities
    FOR EACH ROW WHEN (OLD.user_id IS DISTINCT FROM NEW.user_id
                    OR OLD.unionid IS DISTINCT FROM NEW.unionid
                    OR OLD.app_kind IS DISTINCT FROM NEW.app_kind
                    OR OLD.linked_at IS DISTINCT FROM NEW.linked_at
                    OR OLD.openid IS DISTINCT FROM NEW.openid
                    OR OLD.app_id IS DISTINCT FROM NEW.app_id)
    EXECUTE FUNCTION profile_epoch_bump();
