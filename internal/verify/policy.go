package verify

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
)

// Signer is a signature that counts: who vouches for the path, and why that is
// believed.
type Signer struct {
	Key      string `json:"key"`      // the Nix key name of the signature
	Identity string `json:"identity"` // certified subject, or the plain key's name
	Via      string `json:"via"`      // "certificate", "gate" or "trusted-key"
	Serial   string `json:"serial,omitempty"`
	// Admitted is when the gate log shows the path admitted under the
	// certificate (Via "gate": the certificate is not valid now, but was then).
	Admitted *time.Time `json:"admitted,omitempty"`
}

// Rejection is a signature that does not count, and why.
type Rejection struct {
	Key    string `json:"key"`
	Reason string `json:"reason"`
}

// Admission is a gate log's record of a signature that counted when the gate
// admitted a path.
type Admission struct {
	At         time.Time
	CertSHA256 string // hex SHA-256 of the certificate's DER
	Sig        string // the signature, NAME:base64
	Entry      uint64 // the log entry
}

// AdmissionLog answers "when was this path admitted, and under which
// certificate" (a gate's Merkle log).
type AdmissionLog interface {
	Admissions(storePath string) ([]Admission, error)
}

// Chain is a certificate file's contents: a Nix signing certificate (leaf) and
// the intermediates that came with it.
type Chain struct {
	Leaf   *x509.Certificate
	Extra  []*x509.Certificate
	Source string // file name, or "gate"
}

// Policy decides which signatures count: by plain trusted keys, or by keys whose
// certificate chains to the root (valid now, or when the gate admitted the path).
// It is safe for concurrent use once built.
type Policy struct {
	TrustedKeys map[string]signing.PublicKey // by name
	Verifier    *nixcert.Verifier            // nil: no root, no certificate counts
	Gate        AdmissionLog                 // nil: no gate
	// Target is the machine verified for: a certificate counts only where its
	// targets name it.
	Target string
	Now    time.Time

	certs map[string][]*Chain // by key name

	mu     sync.Mutex
	status map[statusKey]certStatus
}

type statusKey struct {
	leaf *x509.Certificate
	at   time.Time
}

type certStatus struct {
	id  *nixcert.Identity
	err error
}

// AddTrustedKey trusts a plain Nix public key. Nix looks keys up by name, so two
// different keys with one name are refused.
func (p *Policy) AddTrustedKey(k signing.PublicKey) error {
	if p.TrustedKeys == nil {
		p.TrustedKeys = map[string]signing.PublicKey{}
	}
	if old, ok := p.TrustedKeys[k.Name]; ok && !old.Equal(k) {
		return fmt.Errorf("two different trusted keys are named %q", k.Name)
	}
	p.TrustedKeys[k.Name] = k
	return nil
}

// AddChain makes a certificate a candidate for the signatures of its key name. Its
// leaf must at least parse as a Nix signing certificate; whether it is trusted is
// decided per signature.
func (p *Policy) AddChain(c *Chain) error {
	id, err := nixcert.ParseCertificate(c.Leaf)
	if err != nil {
		return err
	}
	if p.certs == nil {
		p.certs = map[string][]*Chain{}
	}
	name := id.Constraints.KeyName
	for _, o := range p.certs[name] {
		if o.Leaf.Equal(c.Leaf) {
			o.Extra = append(o.Extra, c.Extra...)
			return nil
		}
	}
	p.certs[name] = append(p.certs[name], c)
	return nil
}

// Certificates is the number of distinct certificates held.
func (p *Policy) Certificates() int {
	n := 0
	for _, l := range p.certs {
		n += len(l)
	}
	return n
}

// verifyAt checks a certificate at a time, remembering the answer.
func (p *Policy) verifyAt(c *Chain, at time.Time) (*nixcert.Identity, error) {
	k := statusKey{c.Leaf, at}
	p.mu.Lock()
	st, ok := p.status[k]
	p.mu.Unlock()
	if ok {
		return st.id, st.err
	}
	if p.Verifier == nil {
		st.err = errors.New("no root certificate given (--root), so no certificate is trusted")
	} else {
		st.id, st.err = p.Verifier.Verify(c.Leaf, c.Extra, at)
	}
	p.mu.Lock()
	if p.status == nil {
		p.status = map[statusKey]certStatus{}
	}
	p.status[k] = st
	p.mu.Unlock()
	return st.id, st.err
}

// evaluate sorts a path's signatures into those that count and those that do not.
// fp is the path's fingerprint; caOK says whether its content address re-derives it
// (for certificate scopes).
func (p *Policy) evaluate(pi *PathInfo, fp string, caOK bool) (signers []Signer, rejected []Rejection, err error) {
	var admissions []Admission
	gateAsked := false
	for _, sig := range pi.Sigs {
		if k, ok := p.TrustedKeys[sig.Name]; ok && k.Verify(fp, sig) {
			signers = append(signers, Signer{Key: sig.Name, Identity: sig.Name, Via: "trusted-key"})
			continue
		}
		var reasons []string
		if _, ok := p.TrustedKeys[sig.Name]; ok {
			reasons = append(reasons, "does not verify with the trusted key of that name")
		}
		certs := p.certs[sig.Name]
		if len(certs) == 0 && len(reasons) == 0 {
			reasons = append(reasons, "no trusted key or certificate for this key name")
		}
		var found *Signer
		for _, c := range certs {
			leafID, _ := nixcert.ParseCertificate(c.Leaf) // AddChain checked it
			if !leafID.Key.Verify(fp, sig) {
				reasons = append(reasons, fmt.Sprintf("does not verify with the key of certificate %s of %s", leafID.Serial(), leafID.Constraints.Subject))
				continue
			}
			id, verr := p.verifyAt(c, p.Now)
			via, admitted, gateNote := "certificate", (*time.Time)(nil), ""
			if verr != nil && p.Gate != nil && !errors.Is(verr, nixcert.ErrRevoked) {
				if !gateAsked {
					gateAsked = true
					if admissions, err = p.Gate.Admissions(pi.Path); err != nil {
						err = fmt.Errorf("reading the gate log: %w", err)
					}
				}
				gateNote = " (and the gate log shows no admission of this signature)"
				if a, ok := admittedUnder(admissions, c.Leaf, sig); ok {
					gid, gerr := p.verifyAt(c, a.At)
					if gerr == nil {
						id, verr, via = gid, nil, "gate"
						at := a.At
						admitted = &at
					} else {
						verr = gerr
						gateNote = fmt.Sprintf(" (checked at %s, when the gate admitted it)", a.At.UTC().Format(time.RFC3339))
					}
				}
			}
			if verr != nil {
				reasons = append(reasons, certReason(leafID, verr)+gateNote)
				continue
			}
			if !id.AllowsTarget(p.Target) {
				reasons = append(reasons, fmt.Sprintf("certificate %s of %s: its targets (%s) do not include this machine %q (--target)", id.Serial(), id.Constraints.Subject, strings.Join(id.Constraints.Targets, ","), p.Target))
				continue
			}
			if !id.AllowsPath(pi.Path, caOK) {
				reasons = append(reasons, fmt.Sprintf("certificate %s of %s: its scope %q does not cover this path", id.Serial(), id.Constraints.Subject, id.Constraints.Scope))
				continue
			}
			found = &Signer{Key: sig.Name, Identity: id.Constraints.Subject, Via: via, Serial: id.Serial(), Admitted: admitted}
			break
		}
		if found != nil {
			signers = append(signers, *found)
			continue
		}
		rejected = append(rejected, Rejection{Key: sig.Name, Reason: strings.Join(reasons, "; ")})
	}
	return signers, rejected, err
}

// certReason renders why a certificate does not count, without repeating what
// the message around it says.
func certReason(id *nixcert.Identity, err error) string {
	msg := err.Error()
	head := fmt.Sprintf("certificate %s of %s", id.Serial(), id.Constraints.Subject)
	for _, rule := range []error{nixcert.ErrRevoked, nixcert.ErrExpired, nixcert.ErrNotYetValid, nixcert.ErrUntrusted, nixcert.ErrNoCRL, nixcert.ErrProfile} {
		if !errors.Is(err, rule) {
			continue
		}
		detail := msg
		if i := strings.Index(msg, rule.Error()+": "); i >= 0 {
			detail = msg[i+len(rule.Error())+2:]
		}
		first := strings.Fields(rule.Error())[0]
		if strings.HasPrefix(detail, first) {
			return head + " " + detail
		}
		return head + " " + rule.Error() + ": " + detail
	}
	return head + ": " + msg
}

// identities counts the distinct identities among signers: a certified subject
// counts once whatever keys it signed with; a plain key counts by its name.
func identities(signers []Signer) int {
	seen := map[string]bool{}
	for _, s := range signers {
		if s.Via == "trusted-key" {
			seen["key\x00"+s.Identity] = true
		} else {
			seen["subject\x00"+s.Identity] = true
		}
	}
	return len(seen)
}
