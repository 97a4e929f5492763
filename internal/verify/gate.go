package verify

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
)

// GateSource is what verify reads from a gate's data directory. The gate
// provides it (wired in by the command), so that verify does not depend on the
// gate's code.
type GateSource interface {
	// Root is the root certificate the gate trusts.
	Root() (*x509.Certificate, error)
	// Records are the intermediates, leaf certificates and CRLs that members
	// uploaded to the gate.
	Records() (intermediates, leaves []*x509.Certificate, crls [][]byte, err error)
	// Admissions lists every admission in the gate's log, one per signature
	// that counted, after checking the log against the gate's public key.
	Admissions() ([]GateAdmission, error)
}

// GateAdmission is one admission in a gate's log.
type GateAdmission struct {
	Path string // the store path admitted
	Admission
}

// GateLog is a gate's admission log, verified (the gate's GateSource checks
// the Merkle log against the gate's public key before answering), indexed by
// store path.
type GateLog struct {
	Root *x509.Certificate // the root the gate trusts (G/root.crt)
	// Intermediates, Chains and CRLs are what members uploaded to the gate; like
	// --certs and --crl they count only after checks against the root.
	Intermediates []*x509.Certificate
	Chains        []*Chain
	CRLs          [][]byte
	admissions    map[string][]Admission
}

// OpenGate reads the gate named name (its data directory, for messages) through
// src: its root, the certificates and CRLs it holds, and its admissions (from the
// verified log: when a path was admitted under which certificate).
func OpenGate(name string, src GateSource) (*GateLog, error) {
	root, err := src.Root()
	if err != nil {
		return nil, fmt.Errorf("reading its root: %w", err)
	}
	inters, leaves, crls, err := src.Records()
	if err != nil {
		return nil, fmt.Errorf("reading its certificates: %w", err)
	}
	admissions, err := src.Admissions()
	if err != nil {
		return nil, err
	}
	g := &GateLog{Root: root, Intermediates: inters, CRLs: crls, admissions: map[string][]Admission{}}
	for _, l := range leaves {
		if _, err := nixcert.ParseCertificate(l); err == nil {
			g.Chains = append(g.Chains, &Chain{Leaf: l, Extra: inters, Source: "gate " + name})
		}
	}
	for _, a := range admissions {
		g.admissions[a.Path] = append(g.admissions[a.Path], a.Admission)
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
