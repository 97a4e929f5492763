-- ACME server state (internal/acme). Certificates themselves live in `certificates`;
-- orders point at them by serial. Every timestamp is Unix seconds.
-- Secrets shared by every server on this database (the nonce HMAC key).
CREATE TABLE acme_secrets (
    name TEXT PRIMARY KEY,
    value BYTEA NOT NULL
);
-- Spent nonces: a nonce is accepted once; rows go when the nonce would have expired.
CREATE TABLE acme_nonces (
    expires_at BIGINT NOT NULL,
    nonce TEXT NOT NULL,
    PRIMARY KEY (expires_at, nonce)
);
CREATE TABLE acme_accounts (
    id TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    thumbprint TEXT NOT NULL,           -- RFC 7638 SHA-256 thumbprint of the key, base64url
    jwk TEXT NOT NULL,                  -- the public key as a JWK, as the client sent it
    status TEXT NOT NULL,               -- valid, deactivated, revoked
    contacts JSONB NOT NULL,            -- array of URLs
    eab_kid TEXT,                       -- the external account key it was bound with
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX acme_accounts_key ON acme_accounts (provisioner, thumbprint);
-- External Account Binding keys: created by `nixpki acme eab create`, bound once.
CREATE TABLE acme_eab_keys (
    kid TEXT PRIMARY KEY,
    provisioner TEXT NOT NULL,
    hmac_key BYTEA NOT NULL,
    note TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    bound_account TEXT,
    bound_at BIGINT
);
CREATE TABLE acme_orders (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL,
    provisioner TEXT NOT NULL,
    status TEXT NOT NULL,               -- pending, ready, processing, valid, invalid
    identifiers JSONB NOT NULL,         -- array of {type, value}
    ident_key TEXT NOT NULL,            -- canonical sorted identifiers, for order reuse
    profile TEXT NOT NULL,
    not_before BIGINT NOT NULL,         -- 0 when the client gave none
    not_after BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    error TEXT NOT NULL,                -- problem document (JSON) as sent, or ''
    cert_serial TEXT NOT NULL,          -- '' until issued
    replaces TEXT NOT NULL,             -- serial of the certificate this order replaces (ARI), or ''
    authz_ids JSONB NOT NULL,           -- array of its authorization IDs, in order
    created_at BIGINT NOT NULL
);
CREATE INDEX acme_orders_account ON acme_orders (account_id, created_at);
CREATE INDEX acme_orders_cert ON acme_orders (cert_serial) WHERE cert_serial <> '';
CREATE INDEX acme_orders_replaces ON acme_orders (replaces) WHERE replaces <> '';
CREATE INDEX acme_orders_live ON acme_orders (account_id, ident_key) WHERE status IN ('pending', 'ready');
-- One authorization per order identifier; the challenge the client chose is kept on it.
CREATE TABLE acme_authzs (
    id TEXT PRIMARY KEY,
    order_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    ident_type TEXT NOT NULL,
    ident_value TEXT NOT NULL,
    wildcard BOOLEAN NOT NULL,
    status TEXT NOT NULL,               -- pending, valid, invalid, deactivated
    expires_at BIGINT NOT NULL,
    token TEXT NOT NULL,
    chall_type TEXT NOT NULL,           -- '' until the client answers a challenge
    chall_status TEXT NOT NULL,         -- '', processing, valid, invalid
    validated_at BIGINT NOT NULL,
    chall_error TEXT NOT NULL,          -- problem document (JSON) as sent, or ''
    started_at BIGINT NOT NULL          -- when validation began (0 = not yet)
);
CREATE INDEX acme_authzs_order ON acme_authzs (order_id, position);
CREATE INDEX acme_authzs_processing ON acme_authzs (started_at) WHERE chall_status = 'processing'
