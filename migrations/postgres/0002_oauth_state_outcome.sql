-- WeChat's double redirect is answered like the first callback: with a fresh
-- ticket that says whether the first login created the user, or with the same
-- error redirect when the first callback failed after consent.
ALTER TABLE oauth_states ADD COLUMN identity_is_new_user BIGINT NOT NULL DEFAULT 0;
ALTER TABLE oauth_states ADD COLUMN failure TEXT;
