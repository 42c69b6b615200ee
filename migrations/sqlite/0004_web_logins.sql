-- The browser login no longer stores anything when it starts: its context
-- travels sealed in a cookie bound to the browser, and WeChat carries back an
-- authenticated state id. A row appears only when a callback whose state and
-- cookie both check out claims that state, and it is completed, together with
-- the login and its ticket, in one transaction. WeChat's repeat of the same
-- callback is answered from it: the same ticket, kept encrypted only for the
-- repeat window. oauth_states is no longer written; a later release drops it.
CREATE TABLE web_logins (
    state_hash        BLOB    PRIMARY KEY,
    app_id            TEXT    NOT NULL,
    -- HMAC of the code the claiming callback carried (or a marker when the
    -- user declined): a repeat with another code is refused.
    code_hash         BLOB    NOT NULL,
    -- The claim's start; a claimer must still hold it to complete the login.
    claimed_at        INTEGER NOT NULL,
    -- Until when the claim is held; a claimer that crashed loses it then.
    claim_expires_at  INTEGER NOT NULL,
    completed_at      INTEGER,
    -- 'ticket', or the OAuth error the browser was sent back with.
    outcome           TEXT,
    ticket_ciphertext BLOB,
    repeats           INTEGER NOT NULL DEFAULT 0,
    -- The state's own expiry: the row must outlive it, so the state is never
    -- used twice.
    expires_at        INTEGER NOT NULL
);
CREATE INDEX web_logins_expires ON web_logins (expires_at);
