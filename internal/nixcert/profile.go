// Package nixcert is nixpki's Nix signing certificate: an X.509 certificate from the
// Nix-signing intermediate that certifies one member's Ed25519 Nix key, with a
// critical extension saying where (targets) and for what (scope) it may be used.
//
// It holds the profile, its constraints and the key-name rule, and the verifier that
// checks certificates against a root and the newest CRLs it was given. It needs no
// CA directory or database, so gates and clients use it as they are; issuance lives
// in internal/enroll. docs/nix-certificates.md describes the ASN.1.
package nixcert

import (
	"crypto/ed25519"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"

	"nixpki/internal/x509util"
)

// Limits on the constraints: generous for real use, small enough that hostile input
// stays cheap.
const (
	MaxSubjectLen  = 128
	MaxPatternLen  = 253
	MaxTargets     = 64
	MaxPatterns    = 64
	MaxChainCerts  = 8
	maxChainPEMLen = 256 << 10
)

// Scope keywords as ParseScope reads them and Scope.String writes them.
const (
	ScopeAny              = "any"
	ScopeContentAddressed = "content-addressed"
)

// Constraints are what the critical extension carries.
type Constraints struct {
	KeyName string   // the Nix key name, e.g. "alice-1" (signatures "alice-1:…")
	Subject string   // the member or builder
	Targets []string // gate/machine names or glob patterns (path.Match syntax)
	Scope   Scope
}

// Scope limits which store paths a certificate may vouch for.
type Scope struct {
	ContentAddressedOnly bool     // "content-addressed"
	NamePatterns         []string // store-path name globs, e.g. "*-myapp-*"; empty + !ContentAddressedOnly = "any"
}

// IsAny reports whether the scope allows every store path.
func (s Scope) IsAny() bool { return !s.ContentAddressedOnly && len(s.NamePatterns) == 0 }

// ParseScope reads a scope as users write it: "any", "content-addressed", or
// comma-separated store-path name patterns (matched against the name part of a store
// path, what follows "<hash>-", with path.Match). "content-addressed" may be combined
// with patterns: then a path must be content-addressed and match a pattern.
func ParseScope(s string) (Scope, error) {
	var out Scope
	t := strings.TrimSpace(s)
	if t == "" {
		return out, errors.New("empty scope: use any, content-addressed, or store-path name patterns such as 'myapp-*'")
	}
	if t == ScopeAny {
		return out, nil
	}
	for _, p := range strings.Split(t, ",") {
		p = strings.TrimSpace(p)
		switch p {
		case ScopeAny:
			return Scope{}, fmt.Errorf("scope %q: %q cannot be combined with other scopes", s, ScopeAny)
		case ScopeContentAddressed:
			out.ContentAddressedOnly = true
		default:
			if err := validateNamePattern(p); err != nil {
				return Scope{}, fmt.Errorf("scope %q: %w", s, err)
			}
			if !slices.Contains(out.NamePatterns, p) {
				out.NamePatterns = append(out.NamePatterns, p)
			}
		}
	}
	if len(out.NamePatterns) > MaxPatterns {
		return Scope{}, fmt.Errorf("scope %q: %d name patterns, at most %d allowed", s, len(out.NamePatterns), MaxPatterns)
	}
	return out, nil
}

// String renders the scope as ParseScope reads it.
func (s Scope) String() string {
	if s.IsAny() {
		return ScopeAny
	}
	var parts []string
	if s.ContentAddressedOnly {
		parts = append(parts, ScopeContentAddressed)
	}
	return strings.Join(append(parts, s.NamePatterns...), ",")
}

// Validate checks every field of the scope.
func (s Scope) Validate() error {
	if len(s.NamePatterns) > MaxPatterns {
		return fmt.Errorf("scope: %d name patterns, at most %d allowed", len(s.NamePatterns), MaxPatterns)
	}
	for _, p := range s.NamePatterns {
		if err := validateNamePattern(p); err != nil {
			return fmt.Errorf("scope: %w", err)
		}
	}
	return nil
}

// allows reports whether the scope admits a store path (full path or base name).
func (s Scope) allows(storePath string, contentAddressed bool) bool {
	if s.ContentAddressedOnly && !contentAddressed {
		return false
	}
	if len(s.NamePatterns) == 0 {
		return true
	}
	name := storepath.NamePart(storePath)
	if storepath.ValidateName(name) != nil {
		return false
	}
	for _, p := range s.NamePatterns {
		if ok, err := path.Match(p, name); err == nil && ok {
			return true
		}
	}
	return false
}

// ValidateSubject checks a subject name: 1 to MaxSubjectLen characters from
// [A-Za-z0-9._@+-], starting with a letter or digit. Subjects prefix key names, so
// they exclude what key names exclude (':' and whitespace) and more.
func ValidateSubject(s string) error {
	if s == "" {
		return errors.New("subject is empty")
	}
	if len(s) > MaxSubjectLen {
		return fmt.Errorf("subject is %d characters long, at most %d allowed", len(s), MaxSubjectLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return fmt.Errorf("subject %q must start with a letter or digit", s)
		}
		if !alnum && !strings.ContainsRune("._@+-", rune(c)) {
			return fmt.Errorf("subject %q contains %q: use letters, digits and . _ @ + -", s, c)
		}
	}
	return nil
}

// ValidateTarget checks a target: a gate or machine name, or a path.Match pattern of
// such names ("lab-*"), of at most MaxPatternLen printable characters without
// whitespace, ',' or '/'.
func ValidateTarget(t string) error {
	if t == "" {
		return errors.New("target is empty")
	}
	if len(t) > MaxPatternLen {
		return fmt.Errorf("target %q is %d characters long, at most %d allowed", t[:32]+"…", len(t), MaxPatternLen)
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '/' {
			return fmt.Errorf("target %q contains %q: use host names or glob patterns like lab-*", t, c)
		}
	}
	if _, err := path.Match(t, ""); err != nil {
		return fmt.Errorf("target %q is not a valid glob pattern: %w", t, err)
	}
	return nil
}

// validateNamePattern checks a store-path name pattern: store-name characters
// ([0-9a-zA-Z+-._?=]) and the glob characters * [ ] ! ^ \.
func validateNamePattern(p string) error {
	if p == "" {
		return errors.New("empty store-path name pattern")
	}
	if len(p) > MaxPatternLen {
		return fmt.Errorf("store-path name pattern is %d characters long, at most %d allowed", len(p), MaxPatternLen)
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		ok := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || strings.IndexByte("+-._?=*[]!^\\", c) >= 0
		if !ok {
			return fmt.Errorf("store-path name pattern %q contains %q (store names use 0-9 a-z A-Z + - . _ ? =; globs add * [ ] ! ^)", p, c)
		}
	}
	if _, err := path.Match(p, ""); err != nil {
		return fmt.Errorf("store-path name pattern %q is not a valid glob: %w", p, err)
	}
	return nil
}

// Validate checks every field: a valid Nix key name, subject, 1 to MaxTargets valid
// targets without duplicates, and the scope.
func (c Constraints) Validate() error {
	if err := signing.ValidateKeyName(c.KeyName); err != nil {
		return err
	}
	if err := ValidateSubject(c.Subject); err != nil {
		return err
	}
	if len(c.Targets) == 0 {
		return errors.New("no targets: name the gates or machines (or patterns such as lab-*) that may accept the certificate")
	}
	if len(c.Targets) > MaxTargets {
		return fmt.Errorf("%d targets, at most %d allowed", len(c.Targets), MaxTargets)
	}
	for i, t := range c.Targets {
		if err := ValidateTarget(t); err != nil {
			return err
		}
		if slices.Contains(c.Targets[:i], t) {
			return fmt.Errorf("target %q is listed twice", t)
		}
	}
	return c.Scope.Validate()
}

// ParseTargets reads comma-separated targets as users give them on the command line.
func ParseTargets(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, t := range strings.Split(item, ",") {
			t = strings.TrimSpace(t)
			if t == "" {
				continue
			}
			if err := ValidateTarget(t); err != nil {
				return nil, err
			}
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no targets: give --targets with gate or machine names or patterns such as lab-*")
	}
	if len(out) > MaxTargets {
		return nil, fmt.Errorf("%d targets, at most %d allowed", len(out), MaxTargets)
	}
	return out, nil
}

// MarshalConstraints encodes the extension value in DER (docs/nix-certificates.md):
//
//	NixConstraints ::= SEQUENCE {
//	    keyName  UTF8String,
//	    subject  UTF8String,
//	    targets  SEQUENCE SIZE (1..64) OF UTF8String,
//	    scope    NixScope }
//	NixScope ::= SEQUENCE {
//	    contentAddressedOnly  BOOLEAN DEFAULT FALSE,
//	    namePatterns          SEQUENCE SIZE (1..64) OF UTF8String OPTIONAL }
func MarshalConstraints(c Constraints) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	utf8s := func(b *cryptobyte.Builder, s string) {
		b.AddASN1(cbasn1.UTF8String, func(b *cryptobyte.Builder) { b.AddBytes([]byte(s)) })
	}
	var b cryptobyte.Builder
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		utf8s(b, c.KeyName)
		utf8s(b, c.Subject)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			for _, t := range c.Targets {
				utf8s(b, t)
			}
		})
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			if c.Scope.ContentAddressedOnly {
				b.AddASN1Boolean(true) // DER omits a DEFAULT FALSE
			}
			if len(c.Scope.NamePatterns) > 0 {
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					for _, p := range c.Scope.NamePatterns {
						utf8s(b, p)
					}
				})
			}
		})
	})
	return b.Bytes()
}

// ParseConstraints decodes the extension value. It accepts DER only (what
// MarshalConstraints writes, byte for byte) and validates every field.
func ParseConstraints(der []byte) (Constraints, error) {
	var c Constraints
	bad := func(what string) (Constraints, error) {
		return Constraints{}, fmt.Errorf("nix constraints extension: malformed %s (see docs/nix-certificates.md)", what)
	}
	readString := func(s *cryptobyte.String) (string, bool) {
		var v cryptobyte.String
		if !s.ReadASN1(&v, cbasn1.UTF8String) || !utf8.Valid(v) {
			return "", false
		}
		return string(v), true
	}
	readList := func(s *cryptobyte.String, max int) ([]string, bool) {
		var seq cryptobyte.String
		if !s.ReadASN1(&seq, cbasn1.SEQUENCE) || seq.Empty() {
			return nil, false
		}
		var out []string
		for !seq.Empty() {
			if len(out) == max {
				return nil, false
			}
			v, ok := readString(&seq)
			if !ok {
				return nil, false
			}
			out = append(out, v)
		}
		return out, true
	}
	in := cryptobyte.String(der)
	var seq, scope cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return bad("NixConstraints SEQUENCE")
	}
	var ok bool
	if c.KeyName, ok = readString(&seq); !ok {
		return bad("keyName")
	}
	if c.Subject, ok = readString(&seq); !ok {
		return bad("subject")
	}
	if c.Targets, ok = readList(&seq, MaxTargets); !ok {
		return bad("targets")
	}
	if !seq.ReadASN1(&scope, cbasn1.SEQUENCE) || !seq.Empty() {
		return bad("scope")
	}
	if scope.PeekASN1Tag(cbasn1.BOOLEAN) {
		if !scope.ReadASN1Boolean(&c.Scope.ContentAddressedOnly) || !c.Scope.ContentAddressedOnly {
			return bad("scope.contentAddressedOnly (DER omits FALSE)")
		}
	}
	if !scope.Empty() {
		if c.Scope.NamePatterns, ok = readList(&scope, MaxPatterns); !ok || !scope.Empty() {
			return bad("scope.namePatterns")
		}
	}
	if err := c.Validate(); err != nil {
		return Constraints{}, fmt.Errorf("nix constraints extension: %w", err)
	}
	return c, nil
}

// Template returns the certificate template of the profile for c: subject CN = the
// subject, digitalSignature, the Nix store-signing EKU, not a CA, and the critical
// constraints extension. the CA fills in serial, validity and pointers.
func Template(c Constraints) (*x509.Certificate, error) {
	val, err := MarshalConstraints(c)
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		Subject:               pkix.Name{CommonName: c.Subject},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{x509util.OIDNixStoreSigning},
		BasicConstraintsValid: true,
		ExtraExtensions:       []pkix.Extension{{Id: x509util.OIDNixConstraints, Critical: true, Value: val}},
	}, nil
}

// Identity is a certificate that verified.
type Identity struct {
	Cert        *x509.Certificate
	Key         signing.PublicKey // name = Constraints.KeyName, key = the cert's Ed25519 key
	Constraints Constraints
	// Chain is leaf, Nix-signing intermediate, root when Verify made the Identity;
	// just the leaf from ParseCertificate.
	Chain []*x509.Certificate
}

// Serial is the certificate's serial in lowercase hex, like x509util.SerialHex.
func (id *Identity) Serial() string { return x509util.SerialHex(id.Cert.SerialNumber) }

// AllowsTarget reports whether a gate or machine called name is among the targets
// (exactly or by a glob pattern).
func (id *Identity) AllowsTarget(name string) bool {
	if name == "" {
		return false
	}
	for _, t := range id.Constraints.Targets {
		if t == name {
			return true
		}
		if ok, err := path.Match(t, name); err == nil && ok {
			return true
		}
	}
	return false
}

// AllowsPath reports whether the scope admits a store path (a full path or a base
// name "<hash>-<name>"). contentAddressed is the caller's finding that the path's CA
// field re-derives it (narinfo.NarInfo.CheckContentAddress), never a claim taken
// from input.
func (id *Identity) AllowsPath(storePath string, contentAddressed bool) bool {
	return id.Constraints.Scope.allows(storePath, contentAddressed)
}

// HasNixEKU reports whether a certificate carries the Nix store-signing extended key
// usage.
func HasNixEKU(c *x509.Certificate) bool {
	return slices.ContainsFunc(c.UnknownExtKeyUsage, func(o asn1.ObjectIdentifier) bool { return o.Equal(x509util.OIDNixStoreSigning) })
}

// ParseCertificate applies the profile checks to a leaf, without any chain: an
// Ed25519 key, not a CA, digitalSignature if key usage is present, the Nix
// store-signing EKU and not anyExtendedKeyUsage, exactly one constraints extension,
// critical and well-formed, and a common name (if any) equal to its subject.
func ParseCertificate(cert *x509.Certificate) (*Identity, error) {
	if cert == nil {
		return nil, errors.New("no certificate")
	}
	pub, ok := cert.PublicKey.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("not a Nix signing certificate: its key is %T, not Ed25519", cert.PublicKey)
	}
	if cert.IsCA {
		return nil, errors.New("not a Nix signing certificate: it is a CA certificate")
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		return nil, errors.New("not a Nix signing certificate: its key usage lacks digitalSignature")
	}
	if !HasNixEKU(cert) {
		return nil, fmt.Errorf("not a Nix signing certificate: no Nix store-signing extended key usage (%s)", x509util.OIDNixStoreSigning)
	}
	if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageAny) {
		return nil, errors.New("not a Nix signing certificate: it carries anyExtendedKeyUsage")
	}
	var ext *pkix.Extension
	for i := range cert.Extensions {
		if cert.Extensions[i].Id.Equal(x509util.OIDNixConstraints) {
			if ext != nil {
				return nil, errors.New("not a Nix signing certificate: the Nix constraints extension appears twice")
			}
			ext = &cert.Extensions[i]
		}
	}
	if ext == nil {
		return nil, fmt.Errorf("not a Nix signing certificate: no Nix constraints extension (%s)", x509util.OIDNixConstraints)
	}
	if !ext.Critical {
		return nil, errors.New("not a Nix signing certificate: the Nix constraints extension is not marked critical")
	}
	cons, err := ParseConstraints(ext.Value)
	if err != nil {
		return nil, err
	}
	if cn := cert.Subject.CommonName; cn != "" && cn != cons.Subject {
		return nil, fmt.Errorf("not a Nix signing certificate: common name %q differs from the constraints' subject %q", cn, cons.Subject)
	}
	return &Identity{
		Cert:        cert,
		Key:         signing.PublicKey{Name: cons.KeyName, Key: pub},
		Constraints: cons,
		Chain:       []*x509.Certificate{cert},
	}, nil
}

// ParseChainPEM parses the CERTIFICATE blocks of a PEM file, leaf first; other block
// types (a private key by mistake, for one) are skipped. At least one and at most
// MaxChainCerts certificates are accepted.
func ParseChainPEM(data []byte) ([]*x509.Certificate, error) {
	if len(data) > maxChainPEMLen {
		return nil, fmt.Errorf("certificate file is %d bytes long, at most %d accepted", len(data), maxChainPEMLen)
	}
	certs, err := x509util.ParseCertsPEM(data)
	if err != nil {
		return nil, err
	}
	if len(certs) > MaxChainCerts {
		return nil, fmt.Errorf("%d certificates in the chain, at most %d accepted", len(certs), MaxChainCerts)
	}
	return certs, nil
}
