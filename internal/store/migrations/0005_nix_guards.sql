-- What Nix issuance must refuse, and what the attempt log dropped.
-- Public keys that may never be certified again: a certificate for them was revoked
-- for key compromise.
CREATE TABLE nix_blocked_keys (
    public_key BLOB PRIMARY KEY,        -- the 32-byte Ed25519 key
    serial TEXT NOT NULL,               -- the certificate whose revocation blocked it
    blocked_at BIGINT NOT NULL
);
-- The subjects each SSH signer (an SSH key, an SSH CA's key ID) enrolled for: one
-- signer, one subject, unless every mapping involved grants several subjects.
CREATE TABLE nix_ssh_signers (
    signer TEXT NOT NULL,               -- "key SHA256:…" or "key-id SHA256:<CA> <hex SHA-256 of the key ID>"
    subject TEXT NOT NULL,
    multi_subject INTEGER NOT NULL,     -- 1 when the mapping grants several subjects
    first_at BIGINT NOT NULL,
    PRIMARY KEY (signer, subject)
);
-- Counters kept with the records, e.g. attempts dropped by the attempt log's bounds.
CREATE TABLE nix_counters (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
CREATE INDEX nix_certs_public_key ON nix_certs (public_key);
CREATE INDEX nix_certs_renewed_from ON nix_certs (renewed_from)
