-- Every certificate the CA issues, kept forever (revocation, inventory, audit).
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,            -- lowercase hex, no colons
    issuer TEXT NOT NULL,               -- which CA key signed it: root, tls, nix
    subject TEXT NOT NULL,
    sans TEXT NOT NULL,                 -- comma-separated DNS names and IPs
    not_before BIGINT NOT NULL,         -- Unix seconds, as every time here
    not_after BIGINT NOT NULL,
    der BYTEA NOT NULL,
    requester TEXT NOT NULL,            -- who asked (user, account URL, subject)
    method TEXT NOT NULL,               -- how: cli, acme, server, nix-token, ...
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    revocation_reason INTEGER
);
CREATE INDEX certificates_issuer_revoked ON certificates (issuer, revoked_at);
CREATE INDEX certificates_not_after ON certificates (not_after);
-- One row per issuer: bumped on every revocation so CRL caches know to rebuild, and
-- the last CRL built (shared by every server on this database).
CREATE TABLE crls (
    issuer TEXT PRIMARY KEY,
    revision BIGINT NOT NULL,           -- bumped by each revocation
    number BIGINT NOT NULL,             -- CRL number of the stored CRL
    built_revision BIGINT NOT NULL,     -- revision the stored CRL reflects
    this_update BIGINT NOT NULL,
    next_update BIGINT NOT NULL,
    der BYTEA
);
