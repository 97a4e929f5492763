package verify

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nixcert"
)

// maxConfigFile bounds the key, certificate and CRL files read.
const maxConfigFile = 16 << 20

func readSmall(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxConfigFile {
		return nil, fmt.Errorf("%s is %d bytes long, at most %d accepted", name, fi.Size(), maxConfigFile)
	}
	return os.ReadFile(name)
}

// ParseTrustedKeys reads public keys as trusted-public-keys lists them: one or
// more "NAME:base64" separated by whitespace.
func ParseTrustedKeys(text string) ([]signing.PublicKey, error) {
	fields := strings.Fields(text)
	if len(fields) == 0 {
		return nil, errors.New("no public key")
	}
	var out []signing.PublicKey
	for _, f := range fields {
		k, err := signing.ParsePublicKey([]byte(f))
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// LoadTrustedKey reads a --trusted-key argument: key text ("NAME:base64", several
// separated by whitespace), or the name of a file holding such text.
func LoadTrustedKey(arg string) ([]signing.PublicKey, error) {
	keys, textErr := ParseTrustedKeys(arg)
	if textErr == nil {
		return keys, nil
	}
	data, err := readSmall(arg)
	if err != nil {
		if strings.Contains(arg, ":") {
			return nil, fmt.Errorf("trusted key %.60q: %w", arg, textErr)
		}
		return nil, fmt.Errorf("trusted key file: %w", err)
	}
	keys, err = ParseTrustedKeys(string(data))
	if err != nil {
		return nil, fmt.Errorf("trusted key file %s: %w", arg, err)
	}
	return keys, nil
}

// LoadRoot reads the root certificate: the first certificate of a PEM file. More
// certificates in the file are returned as candidate intermediates.
func LoadRoot(name string) (root *x509.Certificate, rest []*x509.Certificate, err error) {
	data, err := readSmall(name)
	if err != nil {
		return nil, nil, fmt.Errorf("root certificate: %w", err)
	}
	certs, err := nixcert.ParseChainPEM(data)
	if err != nil {
		return nil, nil, fmt.Errorf("root certificate %s: %w", name, err)
	}
	return certs[0], certs[1:], nil
}

// certFileExts are the file names LoadChains reads inside directories.
var certFileExts = []string{".pem", ".crt", ".cert", ".chain"}

// LoadChains reads --certs arguments: PEM files of chains (a Nix signing
// certificate first, then intermediates), or directories searched recursively for
// such files (*.pem, *.crt, *.cert, *.chain). A file that cannot be read or holds
// no Nix signing certificate is reported in problems; the others are returned.
func LoadChains(args []string) (chains []*Chain, problems []error) {
	for _, arg := range args {
		fi, err := os.Stat(arg)
		if err != nil {
			problems = append(problems, fmt.Errorf("certificates: %w", err))
			continue
		}
		if !fi.IsDir() {
			c, err := loadChainFile(arg)
			if err != nil {
				problems = append(problems, err)
				continue
			}
			chains = append(chains, c)
			continue
		}
		err = filepath.WalkDir(arg, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				problems = append(problems, fmt.Errorf("certificates: %w", err))
				return nil
			}
			if d.IsDir() || strings.HasPrefix(d.Name(), ".") || !slices.Contains(certFileExts, filepath.Ext(d.Name())) {
				return nil
			}
			c, err := loadChainFile(p)
			if err != nil {
				problems = append(problems, err)
				return nil
			}
			chains = append(chains, c)
			return nil
		})
		if err != nil {
			problems = append(problems, fmt.Errorf("certificates: %w", err))
		}
	}
	return chains, problems
}

func loadChainFile(name string) (*Chain, error) {
	data, err := readSmall(name)
	if err != nil {
		return nil, fmt.Errorf("certificate file: %w", err)
	}
	return ParseChain(data, name)
}

// ParseChain parses a PEM chain whose first certificate must be a Nix signing
// certificate.
func ParseChain(data []byte, source string) (*Chain, error) {
	certs, err := nixcert.ParseChainPEM(data)
	if err != nil {
		return nil, fmt.Errorf("certificate file %s: %w", source, err)
	}
	if _, err := nixcert.ParseCertificate(certs[0]); err != nil {
		return nil, fmt.Errorf("certificate file %s: %w", source, err)
	}
	return &Chain{Leaf: certs[0], Extra: certs[1:], Source: source}, nil
}

// LoadCRL reads a CRL file, PEM ("X509 CRL") or DER.
func LoadCRL(name string) ([]byte, error) {
	data, err := readSmall(name)
	if err != nil {
		return nil, fmt.Errorf("CRL: %w", err)
	}
	if b, _ := pem.Decode(data); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("CRL %s: PEM block is %q, want \"X509 CRL\"", name, b.Type)
		}
		return b.Bytes, nil
	}
	return data, nil
}

// PolicyConfig names where trust comes from, as nixpki verify's flags do.
type PolicyConfig struct {
	Root        string   // root certificate file
	Certs       []string // chain files or directories
	CRLs        []string // CRL files
	TrustedKeys []string // key texts or files
	Gate        string   // gate data directory
	// OpenGate reads the gate data directory Gate; required when Gate is set.
	OpenGate func(dir string) (GateSource, error)
	// Target is the machine the paths are verified for: a certificate counts only
	// if its targets name it. Empty: no certificate counts.
	Target string
	// NoCRL trusts certificates without checking revocation; otherwise an issuer
	// whose CRL is missing, or older than MaxCRLAge (0: any age), is not trusted.
	NoCRL     bool
	MaxCRLAge time.Duration
	Now       time.Time
}

// openGate reads the gate cfg names.
func openGate(cfg PolicyConfig) (*GateLog, error) {
	if cfg.OpenGate == nil {
		return nil, errors.New("no reader for gate directories was configured")
	}
	src, err := cfg.OpenGate(cfg.Gate)
	if err != nil {
		return nil, err
	}
	return OpenGate(cfg.Gate, src)
}

// LoadPolicy builds a Policy. What cannot be read is passed to problem (each one
// an error for the run's exit status) and left out: the policy then trusts less,
// never more. warn receives notices that are not errors.
func LoadPolicy(cfg PolicyConfig, problem, warn func(error)) *Policy {
	p := &Policy{Now: cfg.Now, Target: cfg.Target}
	if p.Now.IsZero() {
		p.Now = time.Now()
	}
	for _, k := range cfg.TrustedKeys {
		keys, err := LoadTrustedKey(k)
		if err != nil {
			problem(err)
			continue
		}
		for _, key := range keys {
			if err := p.AddTrustedKey(key); err != nil {
				problem(err)
			}
		}
	}
	chains, problems := LoadChains(cfg.Certs)
	for _, e := range problems {
		problem(e)
	}
	var gateRoot *x509.Certificate
	var gl *GateLog
	if cfg.Gate != "" {
		g, err := openGate(cfg)
		if err != nil {
			problem(fmt.Errorf("gate %s: %w", cfg.Gate, err))
		} else {
			p.Gate, gateRoot, gl = g, g.Root, g
			chains = append(chains, g.Chains...)
		}
	}
	for _, c := range chains {
		if err := p.AddChain(c); err != nil {
			problem(fmt.Errorf("certificate %s: %w", c.Source, err))
		}
	}
	var root *x509.Certificate
	var rest []*x509.Certificate
	switch {
	case cfg.Root != "":
		var err error
		if root, rest, err = LoadRoot(cfg.Root); err != nil {
			problem(fmt.Errorf("%w; no certificate counts", err))
			return p
		}
		if gateRoot != nil && !gateRoot.Equal(root) {
			warn(fmt.Errorf("the gate %s trusts another root than %s", cfg.Gate, cfg.Root))
		}
	case gateRoot != nil:
		root = gateRoot
	default:
		if len(chains) > 0 {
			problem(errors.New("certificates were given but no root (--root) to check them against: none of them counts"))
		}
		if len(cfg.CRLs) > 0 {
			problem(errors.New("CRLs were given but no root (--root)"))
		}
		return p
	}
	p.Verifier = nixcert.NewVerifier(root)
	// The intermediates that came with the chains (and the root file), so that
	// the CRLs they signed can be checked. Those that do not qualify are left
	// out, as Verify would leave them out.
	for _, c := range chains {
		rest = append(rest, c.Extra...)
	}
	if gl != nil {
		rest = append(rest, gl.Intermediates...)
	}
	for _, c := range rest {
		_ = p.Verifier.AddIntermediate(c)
	}
	// Revocation does not fail open: unless NoCRL, an issuer without a CRL recent
	// enough is not trusted. The gate's CRLs are revocation information like
	// --crl's (the newest one of each issuer wins).
	p.Verifier.RequireCRL = !cfg.NoCRL
	tooOld := func(der []byte) error {
		l, err := x509.ParseRevocationList(der)
		if err != nil || cfg.MaxCRLAge <= 0 || p.Now.Sub(l.ThisUpdate) <= cfg.MaxCRLAge {
			return nil
		}
		return fmt.Errorf("the CRL of %q was issued %s, more than --max-crl-age %s ago: fetch a fresh one (nixpki nix crl, or the CA's /crl/nix.crl)", l.Issuer.CommonName, l.ThisUpdate.UTC().Format(time.RFC3339), cfg.MaxCRLAge)
	}
	if gl != nil {
		for _, der := range gl.CRLs {
			if tooOld(der) == nil {
				_, _ = p.Verifier.AddCRL(der)
			}
		}
	}
	for _, name := range cfg.CRLs {
		der, err := LoadCRL(name)
		if err == nil {
			err = tooOld(der)
		}
		if err == nil {
			_, err = p.Verifier.AddCRL(der)
		}
		if err != nil {
			problem(fmt.Errorf("%s: %w; certificates of its issuer are refused", name, err))
		}
	}
	if !cfg.NoCRL && len(cfg.CRLs) == 0 && (gl == nil || len(gl.CRLs) == 0) && len(chains) > 0 {
		warn(errors.New("revocation was not checked: no CRL given, so no certificate counts; pass --crl nix.crl (from nixpki nix crl or the CA's /crl/nix.crl) or --gate G, or --no-crl to trust certificates without checking revocation"))
	}
	for _, in := range p.Verifier.Intermediates() {
		if l, ok := p.Verifier.CRL(in); ok && !l.NextUpdate.IsZero() && l.NextUpdate.Before(p.Now) {
			warn(fmt.Errorf("the CRL of %q is out of date (its next update was due %s)", in.Subject.CommonName, l.NextUpdate.UTC().Format(time.RFC3339)))
		}
	}
	return p
}
