-- wechat-identity storage schema, PostgreSQL flavour. Times are unix milliseconds,
-- ids are TEXT, ciphertexts are BYTEA written by the key ring. Never edit a
-- released migration: add the next numbered file instead.

CREATE TABLE key_material (
    name       TEXT    PRIMARY KEY,
    ciphertext BYTEA    NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    user_id            TEXT    PRIMARY KEY,
    external_id        TEXT    CONSTRAINT users_external_id_unique UNIQUE,
    nickname           TEXT    NOT NULL DEFAULT '',
    avatar_url         TEXT    NOT NULL DEFAULT '',
    sex                BIGINT NOT NULL DEFAULT 0 CHECK (sex IN (0, 1, 2)),
    province           TEXT    NOT NULL DEFAULT '',
    city               TEXT    NOT NULL DEFAULT '',
    country            TEXT    NOT NULL DEFAULT '',
    privileges         TEXT    NOT NULL DEFAULT '[]',
    profile_updated_at BIGINT,
    phone_ciphertext   BYTEA,
    phone_hash         BYTEA,
    phone_updated_at   BIGINT,
    created_at         BIGINT NOT NULL,
    updated_at         BIGINT NOT NULL
);
CREATE INDEX users_phone_hash ON users (phone_hash);

CREATE TABLE unionids (
    unionid TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE
);
CREATE INDEX unionids_user ON unionids (user_id);

CREATE TABLE identities (
    app_id        TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    user_id       TEXT    NOT NULL REFERENCES users (user_id),
    unionid       TEXT,
    app_kind      TEXT    NOT NULL CHECK (app_kind IN ('mini_program', 'official_account', 'website')),
    scope         TEXT,
    is_snapshot   BIGINT NOT NULL DEFAULT 0,
    linked_at     BIGINT NOT NULL,
    last_login_at BIGINT NOT NULL,
    PRIMARY KEY (app_id, openid)
);
CREATE INDEX identities_user ON identities (user_id);
CREATE INDEX identities_unionid ON identities (unionid);

CREATE TABLE wechat_credentials (
    app_id                 TEXT NOT NULL,
    openid                 TEXT NOT NULL,
    session_key            BYTEA,
    session_key_updated_at BIGINT,
    web_access_token       BYTEA,
    web_access_expires_at  BIGINT,
    web_refresh_token      BYTEA,
    web_refresh_expires_at BIGINT,
    web_scope              TEXT,
    last_used_at           BIGINT,
    PRIMARY KEY (app_id, openid),
    FOREIGN KEY (app_id, openid) REFERENCES identities (app_id, openid) ON DELETE CASCADE
);

CREATE TABLE oauth_states (
    state_hash      BYTEA    PRIMARY KEY,
    app_id          TEXT    NOT NULL,
    scope           TEXT    NOT NULL,
    return_to       TEXT    NOT NULL,
    caller_state    TEXT,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    consumed_at     BIGINT,
    code_hash       BYTEA,
    identity_app_id TEXT,
    identity_openid TEXT
);
CREATE INDEX oauth_states_expires ON oauth_states (expires_at);

CREATE TABLE login_tickets (
    ticket_hash BYTEA    PRIMARY KEY,
    app_id      TEXT    NOT NULL,
    openid      TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    -- The login that minted the ticket created the user (WebLogin's is_new_user).
    is_new_user BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (app_id, openid) REFERENCES identities (app_id, openid) ON DELETE CASCADE
);
CREATE INDEX login_tickets_expires ON login_tickets (expires_at);

CREATE TABLE used_codes (
    code_hash  BYTEA    PRIMARY KEY,
    app_id     TEXT    NOT NULL,
    claimed_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ambiguous  BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX used_codes_expires ON used_codes (expires_at);

CREATE TABLE sessions (
    session_id    TEXT    PRIMARY KEY,
    user_id       TEXT    NOT NULL REFERENCES users (user_id),
    app_id        TEXT    NOT NULL,
    openid        TEXT    NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT,
    revoke_reason TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_identity ON sessions (app_id, openid);
CREATE INDEX sessions_expires ON sessions (expires_at);

CREATE TABLE refresh_tokens (
    token_hash BYTEA    PRIMARY KEY,
    session_id TEXT    NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    generation BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    retired_at BIGINT,
    UNIQUE (session_id, generation)
);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE app_tokens (
    app_id           TEXT    PRIMARY KEY,
    token            BYTEA,
    expires_at       BIGINT,
    fetched_at       BIGINT,
    force_day        BIGINT NOT NULL DEFAULT 0,
    force_used       BIGINT NOT NULL DEFAULT 0,
    force_last_at    BIGINT,
    lease_holder     TEXT,
    lease_expires_at BIGINT
);

CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    private_key BYTEA    NOT NULL,
    public_jwk  TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    retired_at  BIGINT
);

CREATE TABLE audit_events (
    event_id      TEXT    PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor         TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    user_id       TEXT,
    other_user_id TEXT,
    details       TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_user ON audit_events (user_id, at);
CREATE INDEX audit_events_other_user ON audit_events (other_user_id, at);
