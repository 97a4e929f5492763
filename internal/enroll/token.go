package enroll

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
)

// TokenPrefix starts every enrollment token, so secret scanners and people can tell
// one when they see it.
const TokenPrefix = "nixpki-nix-"

// TokenRequest is an admin's one-time token for a member's online enrollment.
type TokenRequest struct {
	Subject   string
	KeyName   string // optional: the only key name the token certifies
	Targets   []string
	Scope     nixcert.Scope
	Validity  time.Duration // of the certificate; 0 = nix.default_validity
	TTL       time.Duration // of the token; 0 = nix.token_ttl
	CreatedBy string
}

func hashToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateToken makes a single-use token bound to a subject, targets, scope and
// validity, stores its hash and returns the token (shown once) and its record.
func (a *Authority) CreateToken(ctx context.Context, r TokenRequest) (string, *store.NixToken, error) {
	pol := a.CA.Config.Nix
	cons := nixcert.Constraints{KeyName: r.KeyName, Subject: r.Subject, Targets: r.Targets, Scope: r.Scope}
	if r.KeyName == "" {
		cons.KeyName = r.Subject // for validation only
	}
	if err := cons.Validate(); err != nil {
		return "", nil, err
	}
	if err := nixcert.CheckKeyName(cons.KeyName, r.Subject); err != nil {
		return "", nil, err
	}
	validity := r.Validity
	if validity == 0 {
		validity = pol.DefaultValidity.D()
	}
	if max := pol.MaxValidity.D(); validity < time.Minute || max > 0 && validity > max {
		return "", nil, fmt.Errorf("validity %s must be between 1m and nix.max_validity %s", validity, max)
	}
	ttl := r.TTL
	if ttl == 0 {
		ttl = pol.TokenTTL.D()
	}
	if ttl <= 0 {
		ttl = 15 * time.Minute
	}
	if max := pol.TokenMaxTTL.D(); max > 0 && ttl > max {
		return "", nil, fmt.Errorf("token lifetime %s exceeds nix.token_max_ttl %s: give a shorter --ttl", ttl, max)
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	token := TokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	h := hashToken(token)
	now := a.now().Truncate(time.Second)
	rec := &store.NixToken{
		ID: hex.EncodeToString(h[:8]), Hash: h, Subject: r.Subject, KeyName: r.KeyName, Targets: r.Targets,
		Scope: r.Scope.String(), Validity: validity, CreatedBy: r.CreatedBy, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := a.Store.PutNixToken(ctx, rec); err != nil {
		return "", nil, err
	}
	return token, rec, nil
}

// EnrollRequest is a member's online enrollment: a CSR signed by the Nix key and
// either a token or an SSH certificate with a signature over a server challenge.
type EnrollRequest struct {
	CSR      []byte        // DER
	Subject  string        // optional: the subject the member expects
	Validity time.Duration // optional: less than the default
	Remote   string        // client address, recorded

	Token string

	SSHCertificate []byte // authorized_keys format
	SSHSignature   []byte // SSH wire-format signature (see SSHSignedData)
	Challenge      string
}

// EnrollToken issues a certificate for the CSR's key on a one-time token. The token
// is consumed in one transaction with its checks, so it serves at most one
// certificate; it is given back if issuance then fails (nothing was issued with it).
func (a *Authority) EnrollToken(ctx context.Context, r EnrollRequest) (iss *ca.Issued, err error) {
	// The attempt keeps what the request says only once a real token vouches for it.
	att := &store.NixAttempt{Method: MethodToken, Remote: r.Remote}
	defer func() { a.record(ctx, att, iss, err) }()
	pub, err := parseCSR(r.CSR)
	if err != nil {
		return nil, err
	}
	token := strings.TrimSpace(r.Token)
	if !strings.HasPrefix(token, TokenPrefix) {
		return nil, forbidden("malformed token: enrollment tokens start with %q (from `nixpki nix token create`)", TokenPrefix)
	}
	now := a.now()
	tok, err := a.Store.ConsumeNixToken(ctx, hashToken(token), now, func(t *store.NixToken) error {
		if r.Subject != "" && r.Subject != t.Subject {
			return forbidden("the token was issued for another subject, %q, not %q", t.Subject, clip(r.Subject, nixcert.MaxSubjectLen))
		}
		if t.KeyName != "" && t.KeyName != pub.Name {
			return forbidden("key name %q does not match the token, which is for key name %q", pub.Name, t.KeyName)
		}
		if err := nixcert.CheckKeyName(pub.Name, t.Subject); err != nil {
			return forbidden("%v", err)
		}
		return nil
	})
	if tok != nil {
		att.TokenID, att.Subject = tok.ID, tok.Subject
		att.KeyName, att.KeyFingerprint = pub.Name, pub.String()
	}
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, forbidden("unknown token: it was never issued by this CA (check for typing errors)")
	case errors.Is(err, store.ErrTokenUsed):
		return nil, forbidden("token %s was already used at %s: ask for a new one", tok.ID, tok.UsedAt.Format(time.RFC3339))
	case errors.Is(err, store.ErrTokenExpired):
		return nil, forbidden("token %s expired at %s: ask for a new one", tok.ID, tok.ExpiresAt.Format(time.RFC3339))
	case err != nil:
		return nil, err
	}
	scope, err := nixcert.ParseScope(tok.Scope)
	if err != nil {
		return nil, fmt.Errorf("token %s: stored scope: %w", tok.ID, err)
	}
	iss, err = a.issue(ctx, issueRequest{
		key: pub, cons: nixcert.Constraints{Subject: tok.Subject, Targets: tok.Targets, Scope: scope},
		validity: r.Validity, cap: tok.Validity, capReason: "the validity the token grants, " + tok.Validity.String(),
		method: MethodToken, authMethod: MethodToken, authAt: now, att: att, tokenID: tok.ID,
	})
	if err != nil {
		if rerr := a.Store.ReleaseNixToken(context.WithoutCancel(ctx), tok.ID); rerr != nil {
			a.Log.Error("nix: giving back a token after a failed issuance", "token", tok.ID, "err", rerr)
		}
		return nil, err
	}
	return iss, nil
}
