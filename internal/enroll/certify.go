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
	"fmt"
	"log/slog"
	"net/http"
	"strings"
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
}

// NewAuthority wraps an open CA. SSH configuration errors are kept (see ConfigError)
// so the rest of the CA still works.
func NewAuthority(c *ca.CA) *Authority {
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	a := &Authority{CA: c, Store: c.DB, Log: log}
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
}

// revokeReasonNeverIssued is the CRL reason for a certificate signed but refused
// before it was handed out (RFC 5280 cessationOfOperation: it is no longer needed).
const revokeReasonNeverIssued = 5

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
	iss, err := a.CA.Sign(ctx, a.CA.Nix, tmpl, r.key.Key, validity, ca.Meta{Requester: r.cons.Subject, Method: "nix-" + r.method})
	if err != nil {
		return nil, err
	}
	if r.authAt.IsZero() {
		r.authAt = now
	}
	rec := &store.NixCert{
		Serial: x509util.SerialHex(iss.Cert.SerialNumber), Subject: r.cons.Subject, KeyName: r.key.Name, PublicKey: r.key.Key,
		Targets: r.cons.Targets, Scope: r.cons.Scope.String(), AuthMethod: r.authMethod, AuthAt: r.authAt,
		RenewedFrom: r.renewedFrom, NotAfter: iss.Cert.NotAfter, CreatedAt: now,
	}
	if err := a.Store.PutNixCert(ctx, rec); err != nil {
		var taken *store.KeyNameTakenError
		if errors.As(err, &taken) {
			// Another issuance for this name with another key won the race between
			// the check above and this record: the certificate just signed was never
			// handed out; revoke it so no copy of it can ever count.
			if _, rerr := a.CA.Revoke(context.WithoutCancel(ctx), rec.Serial, revokeReasonNeverIssued); rerr != nil {
				return nil, fmt.Errorf("revoking certificate %s, signed for the taken key name %q: %w", rec.Serial, r.key.Name, rerr)
			}
			return nil, forbidden("key name %q is already certified for another key (certificate %s, valid until %s): name the new key differently, e.g. %s-2, or revoke %s first",
				r.key.Name, strings.ToUpper(taken.Serial), taken.NotAfter.Format(time.RFC3339), r.cons.Subject, strings.ToUpper(taken.Serial))
		}
		return nil, fmt.Errorf("recording Nix certificate %s: %w", rec.Serial, err)
	}
	return iss, nil
}

// record writes the attempt with its outcome; it never fails the caller.
func (a *Authority) record(ctx context.Context, att *store.NixAttempt, iss *ca.Issued, err error) {
	att.At = a.now()
	if err != nil {
		att.Outcome, att.Reason = "refused", oneLine(err)
		var p *problem.Problem
		if !errors.As(err, &p) || p.Status >= 500 {
			att.Reason = "internal error: " + oneLine(err)
		}
	} else {
		att.Outcome, att.Serial = "issued", x509util.SerialHex(iss.Cert.SerialNumber)
	}
	if rerr := a.Store.AddNixAttempt(context.WithoutCancel(ctx), att); rerr != nil {
		a.Log.Error("nix: recording an issuance attempt", "err", rerr, "attempt", att)
	}
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
		validity: r.Validity, method: MethodCLI, authMethod: MethodCLI,
	})
}

// IsNixCert reports whether a recorded certificate was issued by the Nix intermediate.
func IsNixCert(c *store.Cert) bool { return c.Issuer == ca.IssuerNix }

// Revoke revokes one Nix certificate by serial; other issuers' serials are refused.
func (a *Authority) Revoke(ctx context.Context, serial string, reason int) (*store.Cert, error) {
	s, err := x509util.ParseSerial(serial)
	if err != nil {
		return nil, err
	}
	rec, err := a.Store.GetCert(ctx, s)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("no certificate with serial %s was issued by this CA", strings.ToUpper(s))
	}
	if err != nil {
		return nil, err
	}
	if !IsNixCert(rec) {
		return nil, fmt.Errorf("certificate %s was issued by the %s intermediate, not the Nix one: revoke it with `nixpki cert revoke`", strings.ToUpper(s), rec.Issuer)
	}
	return a.CA.Revoke(ctx, s, reason)
}

// RevokeSubject revokes every live Nix certificate of a subject and returns them.
func (a *Authority) RevokeSubject(ctx context.Context, subject string, reason int) ([]*store.Cert, error) {
	if err := nixcert.ValidateSubject(subject); err != nil {
		return nil, err
	}
	certs, err := a.Store.ListNixCerts(ctx, store.NixCertFilter{Subject: subject})
	if err != nil {
		return nil, err
	}
	var out []*store.Cert
	for _, c := range certs {
		if c.RevokedAt != nil {
			continue
		}
		rec, err := a.CA.Revoke(ctx, c.Serial, reason)
		if err != nil && !errors.Is(err, store.ErrAlreadyRevoked) {
			return out, err
		}
		if err == nil {
			out = append(out, rec)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("subject %q has no unrevoked Nix certificates", subject)
	}
	return out, nil
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
