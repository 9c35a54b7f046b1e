-- Envelope encryption (paved-secrets). Values are stored only sealed; the
-- store never sees a plaintext or an unwrapped key.

-- Data keys, one active per environment, each wrapped by a key-encryption
-- key (KEK). A retired key still opens the values sealed with it until key
-- rotation has re-sealed them; then it is deleted.
CREATE TABLE secret_data_keys (
    id          TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    kek_id      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    wrapped     TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    retired_at  TEXT
);
CREATE INDEX secret_data_keys_by_environment ON secret_data_keys (environment, created_at);

-- Every version of every secret. service = '' for a secret of the whole
-- environment. A deletion is one more version without a value.
CREATE TABLE secret_versions (
    environment TEXT NOT NULL,
    service     TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    key_id      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    deleted     INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    created_by  TEXT NOT NULL,
    PRIMARY KEY (environment, service, name, version)
);
CREATE INDEX secret_versions_by_key ON secret_versions (key_id);

-- The OIDC issuer's signing keys: the private half wrapped like a data key,
-- the public half as a JWK. A key is published from created_at (ahead of
-- use, so verifiers that cache the JWKS know it), signs from activate_at
-- until rotate_at, and is published until publish_until (every token it
-- signed has expired by then).
CREATE TABLE signing_keys (
    kid           TEXT PRIMARY KEY,
    algorithm     TEXT NOT NULL,
    kek_id        TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    wrapped       TEXT NOT NULL,
    public_jwk    TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    activate_at   TEXT NOT NULL,
    rotate_at     TEXT NOT NULL,
    publish_until TEXT NOT NULL
);
