// Package enroll issues Nix signing certificates (internal/nixcert) from the CA's
// Nix-signing intermediate: offline certification by an admin, one-time tokens,
// enrollment with an SSH user certificate, and renewal, each recorded in the CA's
// attempt log; with the HTTP handler that serves them and the client that calls it.
package enroll

import (
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
	"nixpki/internal/problem"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// Issuance methods, as recorded in attempts, in nix_certs.auth_method and (prefixed
// "nix-") in the certificates inventory.
const (
	MethodCLI   = "cli"
	MethodToken = "token"
	MethodSSH   = "ssh"
	MethodRenew = "renew"
)

// Authority issues Nix signing certificates from a CA's Nix-signing intermediate
// under the nix section of its configuration, and records every attempt.
type Authority struct {
	CA *ca.CA
	// Store defaults to the CA's database.
	Store Store
	Log   *slog.Logger
	ssh   *sshAuth
	// sshErr is a configuration error in nix.ssh_user_cas / nix.ssh_principals; SSH
	// enrollment is refused while it is set.
	sshErr error
	// limit is the per-address rate limit of the HTTP endpoints.
	limit *limiter
	// attempts counts recorded attempts, to bound the attempt log now and then.
	attempts atomic.Int64
}

// NewAuthority wraps an open CA. SSH configuration errors are kept (see ConfigError)
// so the rest of the CA still works.
func NewAuthority(c *ca.CA) *Authority {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	a := &Authority{CA: c, Store: c.DB, Log: log}
	a.limit = newLimiter(c.Config.Nix.RatePerMinute, c.Config.Nix.RateBurst, maxLimitedClients)
	a.ssh, a.sshErr = newSSHAuth(c.Config.Nix)
	if a.sshErr != nil {
		log.Error("nix: SSH enrollment disabled by a configuration error", "err", a.sshErr)
	}
	return a
}

// ConfigError reports a problem in the nix configuration section.
func (a *Authority) ConfigError() error { return a.sshErr }

func (a *Authority) now() time.Time { return a.CA.Now().UTC() }

// refused is an issuance refusal the requester can act on: the message names what is
// wrong. status is the HTTP status the server answers with.
func refused(status int, format string, args ...any) error {
	return problem.New(status, "", format, args...)
}

func badRequest(format string, args ...any) error {
	return refused(http.StatusBadRequest, format, args...)
}

func forbidden(format string, args ...any) error {
	return refused(http.StatusForbidden, format, args...)
}

// issueRequest is what every issuance path comes down to.
type issueRequest struct {
	key         signing.PublicKey
	cons        nixcert.Constraints
	validity    time.Duration // asked for; 0 = the default (or cap)
	cap         time.Duration // further upper bound (token validity, renewal deadline); 0 = none
	capReason   string
	method      string
	authMethod  string
	authAt      time.Time
	renewedFrom string
	// att is the attempt, recorded "issued" in the issuance's own transaction.
	att *store.NixAttempt
	// signers are the SSH signers that authenticated the request (one person, one
	// signer); multiSubject says their mapping grants several subjects.
	signers      []string
	multiSubject bool
	tokenID      string
}

// issue checks the request against policy, signs and records it.
func (a *Authority) issue(ctx context.Context, r issueRequest) (*ca.Issued, error) {
	pol := a.CA.Config.Nix
	if len(r.key.Key) != ed25519.PublicKeySize {
		return nil, badRequest("the Nix key is not a %d-byte Ed25519 public key", ed25519.PublicKeySize)
	}
	r.cons.KeyName = r.key.Name
	if err := r.cons.Validate(); err != nil {
		return nil, badRequest("%v", err)
	}
	if err := nixcert.CheckKeyName(r.key.Name, r.cons.Subject); err != nil {
		return nil, forbidden("%v", err)
	}
	validity := r.validity
	if validity < 0 {
		return nil, badRequest("validity %s is negative", validity)
	}
	if validity == 0 {
		validity = pol.DefaultValidity.D()
		if r.cap > 0 && validity > r.cap {
			validity = r.cap
		}
	}
	if max := pol.MaxValidity.D(); max > 0 && validity > max {
		return nil, forbidden("validity %s exceeds nix.max_validity %s: ask for less", validity, max)
	}
	if r.cap > 0 && validity > r.cap {
		return nil, forbidden("validity %s exceeds %s: ask for less", validity, r.capReason)
	}
	if validity < time.Minute {
		return nil, forbidden("validity %s is less than a minute", validity)
	}
	now := a.now()
	live, err := a.Store.ListNixCerts(ctx, store.NixCertFilter{KeyName: r.key.Name, LiveAt: now})
	if err != nil {
		return nil, err
	}
	for _, c := range live {
		if !ed25519.PublicKey(c.PublicKey).Equal(r.key.Key) {
			return nil, forbidden("key name %q is already certified for another key (certificate %s, valid until %s): name the new key differently, e.g. %s-2, or revoke %s first",
				r.key.Name, strings.ToUpper(c.Serial), c.NotAfter.Format(time.RFC3339), r.cons.Subject, strings.ToUpper(c.Serial))
		}
	}
	tmpl, err := nixcert.Template(r.cons)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	if r.authAt.IsZero() {
		r.authAt = now
	}
	// The certificate, its details, its attempt record, its SSH signers and its token
	// commit in one transaction: a certificate the CA cannot record (a full disk) is
	// dropped unseen, so none exists without its audit record.
	var refusal error
	iss, err := a.CA.SignAndRecord(ctx, a.CA.Nix, tmpl, r.key.Key, validity, ca.Meta{Requester: r.cons.Subject, Method: "nix-" + r.method},
		func(ctx context.Context, row *store.Cert) error {
			att := *r.att
			att.At, att.Outcome, att.Reason, att.Serial = now, "issued", "", row.Serial
			boundAttempt(&att)
			err := a.Store.IssueNixCert(ctx, &store.NixIssuance{
				Cert: row, Attempt: &att, Signers: r.signers, MultiSubject: r.multiSubject, TokenID: r.tokenID,
				Nix: &store.NixCert{
					Serial: row.Serial, Subject: r.cons.Subject, KeyName: r.key.Name, PublicKey: r.key.Key,
					Targets: r.cons.Targets, Scope: r.cons.Scope.String(), AuthMethod: r.authMethod, AuthAt: r.authAt,
					RenewedFrom: r.renewedFrom, NotAfter: row.NotAfter, CreatedAt: now,
				},
			})
			if refusal = a.issueRefusal(err, r); refusal != nil {
				return errRefused // not ErrConflict: a refusal draws no new serial
			}
			return err
		})
	switch {
	case refusal != nil:
		return nil, refusal
	case err != nil:
		return nil, refused(http.StatusServiceUnavailable, "the CA could not record the issuance, so it issued nothing: %v; the administrator must check the CA's database and free disk space", err)
	}
	r.att.Serial = x509util.SerialHex(iss.Cert.SerialNumber) // recorded above
	a.attemptRecorded(ctx)
	return iss, nil
}

var errRefused = errors.New("issuance refused")

// issueRefusal turns what the issuance transaction refused into the requester's
// error; nil for anything else.
func (a *Authority) issueRefusal(err error, r issueRequest) error {
	var taken *store.KeyNameTakenError
	var blocked *store.KeyBlockedError
	var bound *store.SignerBoundError
	switch {
	case errors.As(err, &taken):
		return forbidden("key name %q is already certified for another key (certificate %s, valid until %s): name the new key differently, e.g. %s-2, or revoke %s first",
			r.key.Name, strings.ToUpper(taken.Serial), taken.NotAfter.Format(time.RFC3339), r.cons.Subject, strings.ToUpper(taken.Serial))
	case errors.As(err, &blocked):
		return forbidden("the Nix key %s is blocked: certificate %s for it was revoked for key compromise at %s; generate a new key",
			r.key, strings.ToUpper(blocked.Serial), blocked.BlockedAt.Format(time.RFC3339))
	case errors.As(err, &bound):
		return forbidden("%s already enrolled for subject %q: one SSH signer enrolls for one subject (a mapping with multi_subject may grant several)", bound.Signer, bound.Subject)
	}
	return nil
}

// Bounds of what an attempt record keeps of each field.
const (
	maxAttemptField  = 256
	maxAttemptReason = 512
)

// boundAttempt cuts every field of an attempt to its bound, so a record costs the
// database a bounded amount whatever a request carried.
func boundAttempt(att *store.NixAttempt) {
	for _, f := range []*string{&att.Method, &att.Outcome, &att.Subject, &att.KeyName, &att.KeyFingerprint, &att.Remote, &att.TokenID, &att.SSHIdentity, &att.Serial} {
		*f = clip(*f, maxAttemptField)
	}
	att.Reason = clip(att.Reason, maxAttemptReason)
}

// record writes a refused attempt; issued ones were recorded with their
// certificate. It never fails the caller.
func (a *Authority) record(ctx context.Context, att *store.NixAttempt, iss *ca.Issued, err error) {
	if err == nil && iss != nil {
		return
	}
	att.At = a.now()
	att.Outcome, att.Reason, att.Serial = "refused", oneLine(err), ""
	var p *problem.Problem
	if !errors.As(err, &p) || p.Status >= 500 {
		att.Reason = "internal error: " + oneLine(err)
	}
	boundAttempt(att)
	if rerr := a.Store.AddNixAttempt(context.WithoutCancel(ctx), att); rerr != nil {
		// Only what identifies the attempt: the request's fields stay out of logs.
		a.Log.Error("nix: recording a refused issuance attempt", "err", rerr, "method", att.Method, "remote", att.Remote)
		return
	}
	a.attemptRecorded(ctx)
}

// CertifyRequest is an admin's offline certification of a member's public key.
type CertifyRequest struct {
	PublicKey []byte // the .pub file: "NAME:base64"
	Subject   string
	Targets   []string
	Scope     nixcert.Scope
	Validity  time.Duration // 0 = nix.default_validity
	Requester string        // the admin, recorded
}

// Certify certifies a member's Nix public key directly (nixpki nix certify).
func (a *Authority) Certify(ctx context.Context, r CertifyRequest) (iss *ca.Issued, err error) {
	att := &store.NixAttempt{Method: MethodCLI, Subject: r.Subject, Remote: r.Requester}
	defer func() { a.record(ctx, att, iss, err) }()
	pub, err := signing.ParsePublicKey(r.PublicKey)
	if err != nil {
		return nil, badRequest("malformed Nix public key: %v", err)
	}
	att.KeyName, att.KeyFingerprint = pub.Name, pub.String()
	return a.issue(ctx, issueRequest{
		key: pub, cons: nixcert.Constraints{Subject: r.Subject, Targets: r.Targets, Scope: r.Scope},
		validity: r.Validity, method: MethodCLI, authMethod: MethodCLI, att: att,
	})
}

// CRL returns the Nix-signing intermediate's current CRL (DER).
func (a *Authority) CRL(ctx context.Context) ([]byte, error) { return a.CA.CRL(ctx, ca.IssuerNix) }

// Verifier returns a verifier for this CA's root and Nix intermediate.
func (a *Authority) Verifier() *nixcert.Verifier {
	v := nixcert.NewVerifier(a.CA.Root)
	if err := v.AddIntermediate(a.CA.Nix.Cert); err != nil {
		a.Log.Error("nix: the Nix intermediate does not pass the verifier's checks", "err", err)
	}
	return v
}

// parseCSR checks an enrollment CSR: well-formed, self-signed by an Ed25519 key
// (proof of possession of the Nix key), its common name the Nix key name.
func parseCSR(der []byte) (signing.PublicKey, error) {
	if len(der) == 0 {
		return signing.PublicKey{}, badRequest("no CSR in the request")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return signing.PublicKey{}, badRequest("malformed CSR: %v", err)
	}
	pub, ok := csr.PublicKey.(ed25519.PublicKey)
	if !ok {
		return signing.PublicKey{}, badRequest("malformed key: the CSR's key is %T, a Nix key is Ed25519", csr.PublicKey)
	}
	if err := csr.CheckSignature(); err != nil {
		return signing.PublicKey{}, badRequest("the CSR's signature does not verify, so it proves no possession of the Nix key: %v", err)
	}
	name := csr.Subject.CommonName
	if err := signing.ValidateKeyName(name); err != nil {
		return signing.PublicKey{}, badRequest("the CSR's common name must be the Nix key name: %v", err)
	}
	return signing.PublicKey{Name: name, Key: pub}, nil
}

// oneLine folds an error message onto one line for the attempt log.
func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }
