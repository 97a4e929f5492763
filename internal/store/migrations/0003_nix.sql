-- Nix signing certificates (internal/nixcert). The certificates themselves live in
-- `certificates` (issuer 'nix'); these tables keep what issuance and renewal need.
-- Every timestamp is Unix seconds.
-- One-time enrollment tokens. Only a SHA-256 hash of the token is kept.
CREATE TABLE nix_tokens (
    id TEXT PRIMARY KEY,                -- public handle: hex of the hash's first 8 bytes
    hash BLOB NOT NULL,                 -- SHA-256 of the token
    subject TEXT NOT NULL,
    key_name TEXT NOT NULL,             -- '' = any key name of the subject
    targets TEXT NOT NULL,              -- JSON array
    scope TEXT NOT NULL,                -- as nixcert.ParseScope reads it
    validity BIGINT NOT NULL,           -- seconds of certificate validity
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,                     -- NULL until consumed
    used_serial TEXT NOT NULL           -- serial issued with it, '' until then
);
CREATE UNIQUE INDEX nix_tokens_hash ON nix_tokens (hash);
-- What each Nix certificate was issued for and on what authentication: renewal
-- carries auth_at forward and is refused once it is too old.
CREATE TABLE nix_certs (
    serial TEXT PRIMARY KEY,            -- as in certificates
    subject TEXT NOT NULL,
    key_name TEXT NOT NULL,
    public_key BLOB NOT NULL,           -- the 32-byte Ed25519 key
    targets TEXT NOT NULL,              -- JSON array
    scope TEXT NOT NULL,
    auth_method TEXT NOT NULL,          -- cli, token, ssh (the authentication renewals go back to)
    auth_at BIGINT NOT NULL,            -- when that authentication happened
    renewed_from TEXT NOT NULL,         -- serial of the certificate renewed, or ''
    not_after BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX nix_certs_subject ON nix_certs (subject);
CREATE INDEX nix_certs_key_name ON nix_certs (key_name);
-- Every issuance attempt, issued or refused, with the reason.
CREATE TABLE nix_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at BIGINT NOT NULL,
    method TEXT NOT NULL,               -- cli, token, ssh, renew
    outcome TEXT NOT NULL,              -- issued, refused
    reason TEXT NOT NULL,               -- why refused, '' when issued
    subject TEXT NOT NULL,              -- as far as known
    key_name TEXT NOT NULL,
    key_fingerprint TEXT NOT NULL,      -- the Nix public key as NAME:base64, if known
    remote TEXT NOT NULL,               -- client address, or the CLI user
    token_id TEXT NOT NULL,
    ssh_identity TEXT NOT NULL,         -- SSH certificate key ID, serial and CA fingerprint
    serial TEXT NOT NULL                -- certificate issued, ''
);
CREATE INDEX nix_attempts_at ON nix_attempts (at);
-- Server challenges for SSH proof of possession: single use, short-lived.
CREATE TABLE nix_challenges (
    value TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX nix_challenges_expires ON nix_challenges (expires_at)
