package nixcert

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"

	"nixpki/internal/x509util"
)

// The rules Verify applies; its errors wrap one of these (test with errors.Is).
var (
	ErrProfile     = errors.New("not a valid Nix signing certificate")
	ErrUntrusted   = errors.New("does not chain to the root through a Nix-signing intermediate")
	ErrNotYetValid = errors.New("not yet valid")
	ErrExpired     = errors.New("expired")
	ErrRevoked     = errors.New("revoked")
	ErrNoCRL       = errors.New("no CRL held for its issuer")
)

// Verifier checks Nix signing certificates against one root and the newest CRLs it
// was given. It is safe for concurrent use; RequireCRL is set before first use.
type Verifier struct {
	// RequireCRL makes Verify refuse certificates whose issuer has no CRL held yet
	// (ErrNoCRL), for relying parties that must not trust without revocation data.
	RequireCRL bool

	root  *x509.Certificate
	roots *x509.CertPool

	mu     sync.RWMutex
	inters []*x509.Certificate
	crls   map[string]*heldCRL // by issuerKey of the intermediate
	// rootCRL is the newest CRL the root signed: the intermediates it revoked.
	rootCRL *heldCRL
}

type heldCRL struct {
	issuer  *x509.Certificate
	list    *x509.RevocationList
	revoked map[string]x509.RevocationListEntry // by lowercase hex serial
}

// NewVerifier trusts root (and nothing else) as the anchor.
func NewVerifier(root *x509.Certificate) *Verifier {
	roots := x509.NewCertPool()
	roots.AddCert(root)
	return &Verifier{root: root, roots: roots, crls: map[string]*heldCRL{}}
}

// Root is the trust anchor.
func (v *Verifier) Root() *x509.Certificate { return v.root }

// issuerKey identifies a CA certificate by its name and key: a re-keyed intermediate
// with the same name is another issuer.
func issuerKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

// checkIntermediate checks that c is a CA certificate with the Nix-signing EKU,
// signed by the root and valid at `at` (zero: not checked).
func (v *Verifier) checkIntermediate(c *x509.Certificate, at time.Time) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("%q is not a CA certificate", c.Subject.CommonName)
	}
	if !HasNixEKU(c) {
		return fmt.Errorf("%q lacks the Nix store-signing extended key usage %s", c.Subject.CommonName, x509util.OIDNixStoreSigning)
	}
	if err := c.CheckSignatureFrom(v.root); err != nil {
		return fmt.Errorf("%q is not signed by the root %q: %w", c.Subject.CommonName, v.root.Subject.CommonName, err)
	}
	if !at.IsZero() && (at.Before(c.NotBefore) || at.After(c.NotAfter)) {
		return fmt.Errorf("%q is valid only from %s to %s", c.Subject.CommonName, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

// AddIntermediate adds a Nix-signing intermediate: it must be a CA, signed by the
// root, and carry the Nix-signing EKU. Adding one twice is not an error.
func (v *Verifier) AddIntermediate(c *x509.Certificate) error {
	if c == nil {
		return errors.New("no intermediate certificate")
	}
	if err := v.checkIntermediate(c, time.Time{}); err != nil {
		return fmt.Errorf("intermediate refused: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !slices.ContainsFunc(v.inters, func(o *x509.Certificate) bool { return o.Equal(c) }) {
		v.inters = append(v.inters, c)
	}
	return nil
}

// Intermediates returns the intermediates added so far.
func (v *Verifier) Intermediates() []*x509.Certificate {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return slices.Clone(v.inters)
}

// AddCRL offers a DER CRL. It is accepted only if validly signed by a known Nix
// intermediate (see AddIntermediate) or by the root (revoking intermediates: every
// certificate an intermediate it lists issued counts as revoked), and newer than the
// CRL held for that issuer: a higher CRL number and a thisUpdate no earlier, or,
// when either lacks a number, a later thisUpdate. A CRL that is not newer returns
// (false, nil); a malformed or unverifiable one returns an error. Expired CRLs are
// accepted (an old list of revocations is better than none); see CRLThisUpdate.
func (v *Verifier) AddCRL(der []byte) (accepted bool, err error) {
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return false, fmt.Errorf("CRL refused: %w", err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var issuer *x509.Certificate
	for _, c := range append([]*x509.Certificate{v.root}, v.inters...) {
		if bytes.Equal(c.RawSubject, list.RawIssuer) && list.CheckSignatureFrom(c) == nil {
			issuer = c
			break
		}
	}
	if issuer == nil {
		return false, fmt.Errorf("CRL refused: it is not signed by a known Nix-signing intermediate or the root (issuer %q)", list.Issuer.String())
	}
	held := v.crls[issuerKey(issuer)]
	if issuer == v.root {
		held = v.rootCRL
	}
	if held != nil && !newerCRL(list, held.list) {
		return false, nil
	}
	h := &heldCRL{issuer: issuer, list: list, revoked: make(map[string]x509.RevocationListEntry, len(list.RevokedCertificateEntries))}
	for _, e := range list.RevokedCertificateEntries {
		if e.SerialNumber != nil {
			h.revoked[x509util.SerialHex(e.SerialNumber)] = e
		}
	}
	if issuer == v.root {
		v.rootCRL = h
	} else {
		v.crls[issuerKey(issuer)] = h
	}
	return true, nil
}

// IssuedBy returns the certificate (the root or an intermediate) that signed the CRL
// der, if it is one the verifier knows.
func (v *Verifier) IssuedBy(der []byte) *x509.Certificate {
	list, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, c := range append([]*x509.Certificate{v.root}, v.inters...) {
		if bytes.Equal(c.RawSubject, list.RawIssuer) && list.CheckSignatureFrom(c) == nil {
			return c
		}
	}
	return nil
}

func newerCRL(cand, held *x509.RevocationList) bool {
	if cand.Number != nil && held.Number != nil {
		return cand.Number.Cmp(held.Number) > 0 && !cand.ThisUpdate.Before(held.ThisUpdate)
	}
	return cand.ThisUpdate.After(held.ThisUpdate)
}

// CRLThisUpdate returns the thisUpdate of the CRL held for an intermediate.
func (v *Verifier) CRLThisUpdate(issuer *x509.Certificate) (time.Time, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if h := v.crls[issuerKey(issuer)]; h != nil {
		return h.list.ThisUpdate, true
	}
	return time.Time{}, false
}

// CRL returns the CRL held for an intermediate, if any.
func (v *Verifier) CRL(issuer *x509.Certificate) (*x509.RevocationList, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if h := v.crls[issuerKey(issuer)]; h != nil {
		return h.list, true
	}
	return nil, false
}

// revocation looks cert up in the held CRLs of the intermediates that issued it, and
// its issuing intermediate (or cert itself, an intermediate) in the root's CRL.
func (v *Verifier) revocation(cert *x509.Certificate) (*heldCRL, x509.RevocationListEntry, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	serial := x509util.SerialHex(cert.SerialNumber)
	for _, h := range v.crls {
		if !bytes.Equal(cert.RawIssuer, h.issuer.RawSubject) {
			continue
		}
		e, ok := h.revoked[serial]
		if ok && cert.CheckSignatureFrom(h.issuer) == nil {
			return h, e, true
		}
	}
	if r := v.rootCRL; r != nil {
		if e, ok := r.revoked[serial]; ok && bytes.Equal(cert.RawIssuer, v.root.RawSubject) && cert.CheckSignatureFrom(v.root) == nil {
			return r, e, true
		}
		for _, in := range v.inters {
			e, ok := r.revoked[x509util.SerialHex(in.SerialNumber)]
			if ok && bytes.Equal(cert.RawIssuer, in.RawSubject) && cert.CheckSignatureFrom(in) == nil {
				return r, e, true
			}
		}
	}
	return nil, x509.RevocationListEntry{}, false
}

// IsRevoked reports whether a held CRL lists cert.
func (v *Verifier) IsRevoked(cert *x509.Certificate) bool {
	_, _, ok := v.revocation(cert)
	return ok
}

// Revocation returns when and why a held CRL says cert was revoked.
func (v *Verifier) Revocation(cert *x509.Certificate) (at time.Time, reason int, ok bool) {
	_, e, ok := v.revocation(cert)
	return e.RevocationTime, e.ReasonCode, ok
}

// Verify checks leaf (+ optional extra intermediates) at time `at`: chains to root
// through a Nix-signing intermediate, EKU, validity at `at`, not revoked by the held
// CRL, profile parses. The error says which rule failed, in one line, and wraps one
// of ErrProfile, ErrUntrusted, ErrNotYetValid, ErrExpired, ErrRevoked, ErrNoCRL.
//
// A zero `at` means now. A revoked certificate is refused whatever `at` is: revocation is retroactive (a
// compromised key may have signed anything, backdating included).
func (v *Verifier) Verify(leaf *x509.Certificate, extra []*x509.Certificate, at time.Time) (*Identity, error) {
	if leaf == nil {
		return nil, fmt.Errorf("%w: no certificate", ErrProfile)
	}
	name := "nix certificate " + x509util.SerialHex(leaf.SerialNumber)
	fail := func(rule error, format string, args ...any) (*Identity, error) {
		return nil, fmt.Errorf("%s: %w: %s", name, rule, fmt.Sprintf(format, args...))
	}
	id, err := ParseCertificate(leaf)
	if err != nil {
		return fail(ErrProfile, "%v", err)
	}
	name += fmt.Sprintf(" (%s, key %s)", id.Constraints.Subject, id.Constraints.KeyName)
	if at.IsZero() {
		at = time.Now()
	}
	if at.Before(leaf.NotBefore) {
		return fail(ErrNotYetValid, "valid from %s, checked at %s", leaf.NotBefore.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}
	if at.After(leaf.NotAfter) {
		return fail(ErrExpired, "expired at %s, checked at %s", leaf.NotAfter.UTC().Format(time.RFC3339), at.UTC().Format(time.RFC3339))
	}

	// Candidate issuers: the known intermediates and the extra ones that pass the
	// same checks AddIntermediate applies.
	inters := x509.NewCertPool()
	var why []string
	for _, c := range v.Intermediates() {
		inters.AddCert(c)
	}
	for _, c := range extra {
		if c == nil || c.Equal(leaf) || c.Equal(v.root) {
			continue
		}
		if err := v.checkIntermediate(c, time.Time{}); err != nil {
			why = append(why, err.Error())
			continue
		}
		inters.AddCert(c)
	}
	// The constraints extension is handled by ParseCertificate above; tell the x509
	// verifier so on a copy, leaving the caller's certificate untouched.
	cp := *leaf
	cp.UnhandledCriticalExtensions = slices.DeleteFunc(slices.Clone(leaf.UnhandledCriticalExtensions), func(o asn1.ObjectIdentifier) bool {
		return x509util.OIDNixConstraints.Equal(o)
	})
	chains, err := cp.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inters,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, // EKUs are checked below
	})
	if err != nil {
		if len(why) > 0 {
			return fail(ErrUntrusted, "%v (extra intermediates refused: %s)", oneLine(err), strings.Join(why, "; "))
		}
		return fail(ErrUntrusted, "%v", oneLine(err))
	}
	var chain []*x509.Certificate
	for _, ch := range chains {
		if len(ch) == 3 && HasNixEKU(ch[1]) && ch[2].Equal(v.root) {
			chain = ch
			break
		}
	}
	if chain == nil {
		return fail(ErrUntrusted, "issued by %q, which is not a Nix-signing intermediate of root %q", chains[0][1%len(chains[0])].Subject.CommonName, v.root.Subject.CommonName)
	}
	chain[0] = leaf
	issuer := chain[1]

	v.mu.RLock()
	held, rootCRL := v.crls[issuerKey(issuer)], v.rootCRL
	v.mu.RUnlock()
	if rootCRL != nil {
		if e, ok := rootCRL.revoked[x509util.SerialHex(issuer.SerialNumber)]; ok {
			return fail(ErrRevoked, "its intermediate %q was revoked at %s (%s) by CRL %s of the root", issuer.Subject.CommonName, e.RevocationTime.UTC().Format(time.RFC3339), reasonName(e.ReasonCode), crlNumber(rootCRL.list))
		}
	}
	if held == nil && v.RequireCRL {
		return fail(ErrNoCRL, "no CRL of %q has been loaded", issuer.Subject.CommonName)
	}
	if held != nil {
		if e, ok := held.revoked[x509util.SerialHex(leaf.SerialNumber)]; ok {
			return fail(ErrRevoked, "revoked at %s (%s) by CRL %s of %q", e.RevocationTime.UTC().Format(time.RFC3339), reasonName(e.ReasonCode), crlNumber(held.list), issuer.Subject.CommonName)
		}
	}
	id.Chain = chain
	return id, nil
}

func crlNumber(l *x509.RevocationList) string {
	if l.Number == nil {
		return "of " + l.ThisUpdate.UTC().Format(time.RFC3339)
	}
	return "number " + l.Number.String()
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// reasonName names an RFC 5280 revocation reason code.
func reasonName(code int) string {
	names := map[int]string{
		ocsp.Unspecified: "unspecified", ocsp.KeyCompromise: "keyCompromise", ocsp.CACompromise: "cACompromise",
		ocsp.AffiliationChanged: "affiliationChanged", ocsp.Superseded: "superseded",
		ocsp.CessationOfOperation: "cessationOfOperation", ocsp.CertificateHold: "certificateHold",
		ocsp.RemoveFromCRL: "removeFromCRL", ocsp.PrivilegeWithdrawn: "privilegeWithdrawn", ocsp.AACompromise: "aACompromise",
	}
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("reason %d", code)
}
