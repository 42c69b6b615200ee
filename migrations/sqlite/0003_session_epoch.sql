-- A counter that every change to a session's standing (revoked, moved to
-- another user by a merge) bumps in the same transaction. Replicas cache
-- VerifyToken's session reads and drop them when they see it move, so a
-- revocation anywhere reaches every replica within one poll of this row.
CREATE TABLE session_epoch (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    value BIGINT   NOT NULL
);
INSERT INTO session_epoch (id, value) VALUES (1, 0);
