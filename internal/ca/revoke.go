package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// URLs in issued certificates, under the configured external (plain-HTTP) base.
func (c *CA) CRLURL(issuer string) string    { return c.base() + "/crl/" + issuer + ".crl" }
func (c *CA) OCSPURL() string                { return c.base() + "/ocsp" }
func (c *CA) CACertURL(issuer string) string { return c.base() + "/certs/" + issuer + ".crt" }
func (c *CA) base() string                   { return strings.TrimRight(c.Config.ExternalURL, "/") }

// Revocation reasons by the names RFC 5280 gives them.
var reasonCodes = map[string]int{
	"unspecified": ocsp.Unspecified, "keycompromise": ocsp.KeyCompromise, "cacompromise": ocsp.CACompromise,
	"affiliationchanged": ocsp.AffiliationChanged, "superseded": ocsp.Superseded,
	"cessationofoperation": ocsp.CessationOfOperation, "certificatehold": ocsp.CertificateHold,
	"privilegewithdrawn": ocsp.PrivilegeWithdrawn, "aacompromise": ocsp.AACompromise,
}

// ParseReason reads a revocation reason name (keyCompromise, superseded, …).
func ParseReason(s string) (int, error) {
	if s == "" {
		return ocsp.Unspecified, nil
	}
	if r, ok := reasonCodes[strings.ToLower(s)]; ok && r != ocsp.CertificateHold {
		return r, nil
	}
	return 0, fmt.Errorf("unknown revocation reason %q: use unspecified, keyCompromise, caCompromise, affiliationChanged, superseded, cessationOfOperation or privilegeWithdrawn", s)
}

// Revoke revokes the certificate with the given serial (any hex form). It shows in
// the next CRL and OCSP answer at once, from any server sharing the database.
func (c *CA) Revoke(ctx context.Context, serial string, reason int) (*store.Cert, error) {
	s, err := x509util.ParseSerial(serial)
	if err != nil {
		return nil, err
	}
	rec, err := c.Certs.RevokeCert(ctx, s, c.Now(), reason)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("no certificate with serial %s was issued by this CA (see `nixpki cert list`)", s)
	case errors.Is(err, store.ErrAlreadyRevoked):
		return rec, fmt.Errorf("certificate %s was already revoked at %s", s, rec.RevokedAt.Format(time.RFC3339))
	case err != nil:
		return nil, err
	}
	if rec.Issuer == IssuerRoot {
		c.Log.Warn("revoked an intermediate: the server's CRLs cover leaves only; carry the change with a root CRL (nixpki nix crl --root, needs the root key) or by replacing the intermediate", "serial", s)
	}
	return rec, nil
}

// CRL returns the current DER CRL of the issuer, rebuilding it when a revocation has
// happened since it was built or half its validity has passed.
func (c *CA) CRL(ctx context.Context, issuer string) ([]byte, error) {
	iss, err := c.Issuer(issuer)
	if err != nil {
		return nil, err
	}
	st, err := c.Certs.GetCRL(ctx, iss.Name)
	if err != nil {
		return nil, err
	}
	now := c.Now()
	validity := c.Config.Policy.CRLValidity.D()
	if validity <= 0 {
		validity = 7 * 24 * time.Hour
	}
	fresh := st.DER != nil && st.BuiltRevision == st.Revision && now.Before(st.ThisUpdate.Add(validity/2))
	if fresh {
		return st.DER, nil
	}
	der, err := c.rebuildCRL(ctx, iss)
	if errors.Is(err, store.ErrReadOnly) && st.DER != nil {
		// A read-only standby serves the newest CRL a writable server built.
		return st.DER, nil
	}
	return der, err
}

// RootCRL builds a new CRL signed by the root with rootKey (the root key is not kept
// by the server; it may be offline), listing the intermediates revoked (nixpki nix
// revoke SERIAL of an intermediate). Relying parties that hold it (the gate,
// nixpki verify) treat every certificate a listed intermediate issued as revoked.
func (c *CA) RootCRL(ctx context.Context, rootKey crypto.Signer) ([]byte, error) {
	if !publicKeysEqual(rootKey.Public(), c.Root.PublicKey) {
		return nil, errors.New("the key given is not the root's")
	}
	return c.rebuildCRL(ctx, &Issuer{Name: IssuerRoot, Cert: c.Root, Signer: rootKey, KeyType: keys.TypeOf(c.Root.PublicKey)})
}

// rebuildCRL builds and stores the issuer's next CRL.
func (c *CA) rebuildCRL(ctx context.Context, iss *Issuer) ([]byte, error) {
	now := c.Now()
	validity := c.Config.Policy.CRLValidity.D()
	if validity <= 0 {
		validity = 7 * 24 * time.Hour
	}
	st, err := c.Certs.RebuildCRL(ctx, iss.Name, func(number int64, revoked []store.RevokedEntry) ([]byte, time.Time, time.Time, error) {
		tmpl := &x509.RevocationList{
			Number:     big.NewInt(number),
			ThisUpdate: now.UTC().Add(-time.Minute).Truncate(time.Second),
			NextUpdate: now.UTC().Add(validity).Truncate(time.Second),
		}
		for _, r := range revoked {
			n, _ := new(big.Int).SetString(r.Serial, 16)
			tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
				SerialNumber: n, RevocationTime: r.RevokedAt, ReasonCode: r.Reason,
			})
		}
		der, err := x509.CreateRevocationList(rand.Reader, tmpl, iss.Cert, iss.Signer)
		return der, tmpl.ThisUpdate, tmpl.NextUpdate, err
	})
	if err != nil {
		return nil, err
	}
	return st.DER, nil
}
