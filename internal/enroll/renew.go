package enroll

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/keys"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
)

// RenewRequest renews a valid certificate for the same key.
type RenewRequest struct {
	CSR      []byte              // DER, signed by the certificate's key
	Chain    []*x509.Certificate // the current certificate first
	Validity time.Duration       // optional
	Remote   string
}

// Renew issues a new certificate with the same subject, key name, targets and scope
// to the holder of a valid (unexpired, unrevoked) one, on proof of possession of the
// same key. Renewals never outlast nix.renew_max_age after the last token or SSH
// authentication: the new certificate ends by then at the latest, and once it has
// passed the member must enroll again.
//
// Renewal needs no server challenge: a replayed renewal request can only get a
// certificate for the same key (useless without the private key) within the same
// bound.
func (a *Authority) Renew(ctx context.Context, r RenewRequest) (iss *ca.Issued, err error) {
	att := &store.NixAttempt{Method: MethodRenew, Remote: r.Remote}
	defer func() { a.record(ctx, att, iss, err) }()
	pub, err := parseCSR(r.CSR)
	if err != nil {
		return nil, err
	}
	if len(r.Chain) == 0 {
		return nil, badRequest("renewal needs the current certificate")
	}
	now := a.now()
	id, err := a.Verifier().Verify(r.Chain[0], r.Chain[1:], now)
	if err != nil {
		return nil, forbidden("the certificate to renew is not valid: %v", err)
	}
	if !id.Key.Equal(pub) {
		return nil, forbidden("the CSR's key (%s) is not the certificate's key (%s): renewal keeps the key; enroll a new key with a token or SSH certificate", pub, id.Key)
	}
	// Authenticated: the attempt may keep what the certificate says.
	att.Subject, att.KeyName, att.KeyFingerprint = id.Constraints.Subject, pub.Name, pub.String()
	rec, err := a.Store.GetNixCert(ctx, id.Serial())
	if errors.Is(err, store.ErrNotFound) {
		return nil, forbidden("certificate %s is not in this CA's records", strings.ToUpper(id.Serial()))
	} else if err != nil {
		return nil, err
	}
	if rec.RevokedAt != nil {
		return nil, forbidden("certificate %s was revoked at %s", strings.ToUpper(rec.Serial), rec.RevokedAt.Format(time.RFC3339))
	}
	maxAge := a.CA.Config.Nix.RenewMaxAge.D()
	if maxAge <= 0 {
		return nil, forbidden("renewal is disabled on this CA (nix.renew_max_age is 0): enroll again with a token or SSH certificate")
	}
	deadline := rec.AuthAt.Add(maxAge)
	if !now.Before(deadline.Add(-time.Minute)) {
		return nil, forbidden("the last authentication (%s at %s) is older than nix.renew_max_age %s: enroll again with a token or SSH certificate",
			rec.AuthMethod, rec.AuthAt.Format(time.RFC3339), maxAge)
	}
	// A renewal lasts no longer than the certificate it renews, so the validity a
	// token granted (nixpki nix token create --valid) holds for its renewals too.
	cap := deadline.Sub(now).Truncate(time.Second)
	capReason := fmt.Sprintf("the renewal limit, %s after the last authentication (nix.renew_max_age)", maxAge)
	if life := r.Chain[0].NotAfter.Sub(r.Chain[0].NotBefore) - keys.Backdate; life < cap {
		cap, capReason = life, fmt.Sprintf("the validity of the certificate renewed, %s", life)
	}
	return a.issue(ctx, issueRequest{
		key: pub, cons: nixcert.Constraints{Subject: rec.Subject, Targets: id.Constraints.Targets, Scope: id.Constraints.Scope},
		validity: r.Validity, cap: cap,
		capReason: capReason,
		method:    MethodRenew, authMethod: rec.AuthMethod, authAt: rec.AuthAt, renewedFrom: rec.Serial, att: att,
	})
}
