package verify

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"nixpki/internal/gate"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
)

// GateLog is a gate's admission log, verified (internal/gate's Audit checks the
// Merkle log against the gate's public key before answering), indexed by store
// path.
type GateLog struct {
	Root *x509.Certificate // the root the gate trusts (G/root.crt)
	// Intermediates, Chains and CRLs are what members uploaded to the gate; like
	// --certs and --crl they count only after checks against the root.
	Intermediates []*x509.Certificate
	Chains        []*Chain
	CRLs          [][]byte
	admissions    map[string][]Admission
}

// OpenGate reads the gate in dir: its root, the certificates and CRLs it holds,
// and its admissions (from the verified log: when a path was admitted under which
// certificate).
func OpenGate(dir string) (*GateLog, error) {
	root, err := gate.ReadRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("reading its root: %w", err)
	}
	inters, leaves, crls, err := gate.Records(dir)
	if err != nil {
		return nil, fmt.Errorf("reading its certificates: %w", err)
	}
	events, _, err := gate.Audit(dir, "")
	if err != nil {
		return nil, err
	}
	g := &GateLog{Root: root, Intermediates: inters, CRLs: crls, admissions: map[string][]Admission{}}
	for _, l := range leaves {
		if _, err := nixcert.ParseCertificate(l); err == nil {
			g.Chains = append(g.Chains, &Chain{Leaf: l, Extra: inters, Source: "gate " + dir})
		}
	}
	for _, e := range events {
		if e.Type != "admission" {
			continue
		}
		for _, s := range e.Signers {
			g.admissions[e.Path] = append(g.admissions[e.Path], Admission{At: e.Time, CertSHA256: s.Cert, Sig: s.Sig, Entry: e.Entry})
		}
	}
	return g, nil
}

// Admissions lists the admissions of a store path, one per signature that counted.
func (g *GateLog) Admissions(storePath string) ([]Admission, error) {
	return g.admissions[storePath], nil
}

// Paths is the number of store paths the log shows admitted.
func (g *GateLog) Paths() int { return len(g.admissions) }

// admittedUnder finds an admission of exactly this signature (so of this path's
// fingerprint: same contents) under the certificate c.
func admittedUnder(admissions []Admission, c *x509.Certificate, sig signing.Signature) (Admission, bool) {
	sum := sha256.Sum256(c.Raw)
	id := hex.EncodeToString(sum[:])
	text := sig.String()
	for _, a := range admissions {
		if a.CertSHA256 == id && a.Sig == text {
			return a, true
		}
	}
	return Admission{}, false
}
