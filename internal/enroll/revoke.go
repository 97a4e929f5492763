package enroll

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/ca"
	"nixpki/internal/nixcert"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// IsNixCert reports whether a recorded certificate was issued by the Nix intermediate.
func IsNixCert(c *store.Cert) bool { return c.Issuer == ca.IssuerNix }

// Revoke revokes one Nix certificate by serial, and with it what its reason reaches:
//   - keyCompromise blocks its public key: every live certificate for the key is
//     revoked too, and no certificate is issued for the key again (certify, token,
//     SSH enrollment, renewal);
//   - any other reason revokes the renewals descending from it, which carry the
//     same authentication forward.
//
// It returns what it revoked, the named certificate first. Other issuers' serials
// are refused.
func (a *Authority) Revoke(ctx context.Context, serial string, reason int) ([]*store.Cert, error) {
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
	var out []*store.Cert
	// A certificate revoked before for another reason may still be revoked for key
	// compromise: its key is blocked all the same.
	if !rec.Revoked() || reason != ocsp.KeyCompromise {
		first, err := a.CA.Revoke(ctx, s, reason)
		if err != nil {
			return nil, err
		}
		out = append(out, first)
	}
	more, err := a.revokeReach(ctx, s, reason)
	return append(out, more...), err
}

// revokeReach revokes what revoking serial for reason reaches besides itself.
func (a *Authority) revokeReach(ctx context.Context, serial string, reason int) ([]*store.Cert, error) {
	nc, err := a.Store.GetNixCert(ctx, serial)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // issued before issuance details were kept: nothing to follow
	} else if err != nil {
		return nil, err
	}
	var reached []*store.NixCert
	if reason == ocsp.KeyCompromise {
		if err := a.Store.BlockNixKey(ctx, nc.PublicKey, serial, a.now()); err != nil {
			return nil, fmt.Errorf("blocking the key of certificate %s: %w", strings.ToUpper(serial), err)
		}
		if reached, err = a.Store.ListNixCerts(ctx, store.NixCertFilter{PublicKey: nc.PublicKey, LiveAt: a.now()}); err != nil {
			return nil, err
		}
	} else {
		// The renewal chain: breadth first, bounded by the certificates there are.
		next := []string{serial}
		for len(next) > 0 {
			kids, err := a.Store.ListNixCerts(ctx, store.NixCertFilter{RenewedFrom: next[0]})
			if err != nil {
				return nil, err
			}
			next = next[1:]
			for _, k := range kids {
				reached = append(reached, k)
				next = append(next, k.Serial)
			}
		}
	}
	var out []*store.Cert
	for _, c := range reached {
		if c.Serial == serial || c.RevokedAt != nil {
			continue
		}
		rec, err := a.CA.Revoke(ctx, c.Serial, reason)
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
	return out, nil
}

// RevokeSubject revokes every live Nix certificate of a subject, and what each
// revocation reaches (see Revoke), and returns them.
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
		if slices.ContainsFunc(out, func(r *store.Cert) bool { return r.Serial == c.Serial }) {
			continue // reached by an earlier one
		}
		recs, err := a.Revoke(ctx, c.Serial, reason)
		out = append(out, recs...)
		if err != nil {
			return out, err
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("subject %q has no unrevoked Nix certificates", subject)
	}
	return out, nil
}
