package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"nixpki/internal/keys"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// Meta says who asked for a certificate and how; it is recorded with it.
type Meta struct {
	Requester string // e.g. a user name, an ACME account URL, a Nix subject
	Method    string // cli, acme, server, nix-token, nix-ssh, ...
	// Unrecorded issues without a database record: only for a server's own HTTPS
	// certificate when its database is a read-only standby (it takes no records),
	// so that the standby can serve reads.
	Unrecorded bool
}

// Issued is a signed, recorded certificate with its chain up to (not including) the root.
type Issued struct {
	Cert  *x509.Certificate
	Chain []*x509.Certificate // leaf first, then the intermediate
	// Notes tell the user about adjustments (e.g. validity clamped to the issuer's).
	Notes []string
}

// ChainPEM is the leaf followed by its intermediate, as nginx and Caddy want.
func (i *Issued) ChainPEM() []byte { return x509util.ChainPEM(i.Chain...) }

// Sign completes tmpl (serial, backdated notBefore, notAfter clamped to the issuer's,
// CRL and OCSP pointers), signs it for pub with the issuer and records it. It is the
// one place certificates are minted; callers apply their own policy first. A notBefore
// set in tmpl is kept (validity counts from it); a notAfter set in tmpl is kept, or
// refused when it is after the issuer's.
func (c *CA) Sign(ctx context.Context, iss *Issuer, tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, meta Meta) (*Issued, error) {
	return c.SignAndRecord(ctx, iss, tmpl, pub, validity, meta, c.Certs.PutCert)
}

// SignAndRecord is Sign with the caller's record step, for issuances that record
// more than the certificate: record must store the certificate's row with the rest
// in one transaction. A certificate whose record fails is dropped unseen, so it was
// never issued; store.ErrConflict (a serial collision) draws another serial.
func (c *CA) SignAndRecord(ctx context.Context, iss *Issuer, tmpl *x509.Certificate, pub crypto.PublicKey, validity time.Duration, meta Meta, record func(context.Context, *store.Cert) error) (*Issued, error) {
	now := c.Now().UTC().Truncate(time.Second)
	out := &Issued{}
	notBefore, notAfter := now.Add(-keys.Backdate), now.Add(validity)
	if !tmpl.NotBefore.IsZero() {
		notBefore = tmpl.NotBefore.UTC()
		notAfter = notBefore.Add(validity)
	}
	if err := c.issuerUsable(ctx, iss); err != nil {
		return nil, err
	}
	switch {
	case !tmpl.NotAfter.IsZero():
		// An exact window was asked for: it is kept or refused, never cut.
		notAfter = tmpl.NotAfter.UTC()
		if notAfter.After(iss.Cert.NotAfter) {
			return nil, fmt.Errorf("notAfter %s is after the issuing CA's expiry, %s: no certificate outlives its issuer", notAfter.Format(time.RFC3339), iss.Cert.NotAfter.UTC().Format(time.RFC3339))
		}
	case validity <= 0:
		return nil, errors.New("validity must be positive")
	case notAfter.After(iss.Cert.NotAfter):
		notAfter = iss.Cert.NotAfter
		out.Notes = append(out.Notes, fmt.Sprintf("validity clamped to the issuing CA's expiry, %s: no certificate outlives its issuer", notAfter.Format(time.RFC3339)))
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("notAfter %s is not after notBefore %s", notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	tmpl.NotBefore = notBefore
	tmpl.NotAfter = notAfter
	tmpl.SignatureAlgorithm = keys.SignatureAlgorithm(iss.KeyType)
	tmpl.CRLDistributionPoints = []string{c.CRLURL(iss.Name)}
	tmpl.OCSPServer = []string{c.OCSPURL()}
	tmpl.IssuingCertificateURL = []string{c.CACertURL(iss.Name)}
	for attempt := 0; ; attempt++ {
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		tmpl.SerialNumber = serial
		der, err := x509.CreateCertificate(rand.Reader, tmpl, iss.Cert, pub, iss.Signer)
		if err != nil {
			return nil, fmt.Errorf("signing: %w", err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err
		}
		if !meta.Unrecorded {
			err = record(ctx, certRecord(cert, iss.Name, meta.Requester, meta.Method))
		}
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue // a 2^-126 event: draw another serial
		}
		if err != nil {
			return nil, fmt.Errorf("recording the certificate: %w", err)
		}
		out.Cert = cert
		out.Chain = []*x509.Certificate{cert, iss.Cert}
		return out, nil
	}
}

// TLSRequest asks for a TLS leaf certificate from the TLS intermediate.
type TLSRequest struct {
	// Names are DNS names and IP addresses (validated by ParseSANs).
	Names []string
	// PublicKey of the subject; from the CSR when CSR is set.
	PublicKey crypto.PublicKey
	CSR       *x509.CertificateRequest
	// Validity; 0 means policy.default_validity.
	Validity time.Duration
	// ClientAuth adds the clientAuth usage next to serverAuth.
	ClientAuth bool
	Meta       Meta
}

// IssueTLS applies the CA's policy (SAN syntax, wildcards, name constraints, maximum
// validity) and issues a TLS server certificate. Policy errors name what is wrong.
func (c *CA) IssueTLS(ctx context.Context, r TLSRequest) (*Issued, error) {
	pol := c.Config.Policy
	if r.CSR != nil {
		if err := r.CSR.CheckSignature(); err != nil {
			return nil, fmt.Errorf("the CSR's signature does not verify: %w", err)
		}
		r.PublicKey = r.CSR.PublicKey
		if len(r.Names) == 0 {
			r.Names = append(r.Names, r.CSR.DNSNames...)
			for _, ip := range r.CSR.IPAddresses {
				r.Names = append(r.Names, ip.String())
			}
			if len(r.Names) == 0 && r.CSR.Subject.CommonName != "" {
				r.Names = []string{r.CSR.Subject.CommonName}
			}
		}
	}
	if r.PublicKey == nil {
		return nil, errors.New("no public key: give a CSR or a key")
	}
	if err := CheckLeafKey(r.PublicKey); err != nil {
		return nil, err
	}
	sans, err := ParseSANs(r.Names, pol.AllowWildcards)
	if err != nil {
		return nil, err
	}
	if err := CheckNameConstraints(c.TLS, sans); err != nil {
		return nil, err
	}
	validity := r.Validity
	if validity == 0 {
		validity = pol.DefaultValidity.D()
	}
	if max := pol.MaxValidity.D(); max > 0 && validity > max {
		return nil, fmt.Errorf("validity %s exceeds policy.max_validity %s: ask for less", validity, max)
	}
	cn := ""
	if len(sans.DNS) > 0 {
		cn = sans.DNS[0]
	} else {
		cn = sans.IPs[0].String()
	}
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	if r.ClientAuth {
		eku = append(eku, x509.ExtKeyUsageClientAuth)
	}
	ku := x509.KeyUsageDigitalSignature
	if keys.TypeOf(r.PublicKey) == keys.RSA3072 {
		ku |= x509.KeyUsageKeyEncipherment // RSA key exchange in TLS 1.2
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		DNSNames:    sans.DNS,
		IPAddresses: sans.IPs,
		KeyUsage:    ku,
		ExtKeyUsage: eku,
	}
	return c.Sign(ctx, c.TLS, tmpl, r.PublicKey, validity, r.Meta)
}

// CheckLeafKey accepts the key types nixpki certifies: RSA ≥ 2048, P-256, P-384, Ed25519.
func CheckLeafKey(pub crypto.PublicKey) error {
	if keys.TypeOf(pub) == "" {
		return fmt.Errorf("the key is %s: use RSA of at least 2048 bits, ECDSA P-256 or P-384, or Ed25519", keys.Describe(pub))
	}
	return nil
}

// maxCSRBytes bounds a CSR; real ones are a few KiB even with RSA-4096 keys.
const maxCSRBytes = 64 << 10

// ParseCSR reads a PEM or DER certificate request and checks its self-signature.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > maxCSRBytes {
		return nil, fmt.Errorf("CSR is %d bytes, more than the %d allowed", len(data), maxCSRBytes)
	}
	der := data
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
			return nil, fmt.Errorf("PEM block is %q, want CERTIFICATE REQUEST", b.Type)
		}
		der = b.Bytes
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("not a valid CSR (PEM CERTIFICATE REQUEST or DER): %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("the CSR's signature does not verify: %w", err)
	}
	return csr, nil
}

// issuerUsable refuses an intermediate the CA itself has revoked: whatever it signed
// fails wherever the root's CRL reaches, so issuing under it only misleads.
func (c *CA) issuerUsable(ctx context.Context, iss *Issuer) error {
	rec, err := c.Certs.GetCert(ctx, x509util.SerialHex(iss.Cert.SerialNumber))
	if err != nil || !rec.Revoked() {
		return nil // the intermediates of CAs made before they were recorded
	}
	return fmt.Errorf("the %s intermediate %s was revoked at %s: nothing more is issued under it, and what it signed is refused wherever the root's CRL (nixpki nix crl --root) reaches; a new CA (nixpki init --dir NEWDIR) is the way out, with its root distributed and members certified again",
		iss.Name, strings.ToUpper(x509util.SerialHex(iss.Cert.SerialNumber)), rec.RevokedAt.UTC().Format(time.RFC3339))
}
