package ca

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/x509util"
)

// Lifetimes of the CA's own certificates.
const (
	rootValidity         = 10 * 365 * 24 * time.Hour
	intermediateValidity = 5 * 365 * 24 * time.Hour
)

// InitOptions are the choices `nixpki init` takes.
type InitOptions struct {
	Dir          string
	Config       config.Config // name, key type, names, constraints, external URL
	PasswordFile string        // existing password file; empty = generate one
	// FromSettings: the configuration lives in a settings file elsewhere, so the
	// directory records only what creation decided (D/state.json), not D/config.json.
	FromSettings bool
}

// InitResult says what init made, for the command to report.
type InitResult struct {
	Root              *x509.Certificate
	GeneratedPassword string // path of the generated password file, if any
	OfflineRootKey    string // path of the root key to carry away, if --offline-root
	Config            config.Config
	Warnings          []string
}

// Init creates a new CA in opts.Dir: a root and two intermediates (TLS, Nix signing),
// keys encrypted at rest, the configuration and the database. Everything is built in a
// temporary directory inside opts.Dir (a systemd StateDirectory may be the only place
// the service can write) and moved into place at the end, the file marking the
// directory as initialised last, so an interrupted init leaves nothing that later
// looks initialised. An initialised or non-empty directory is never overwritten.
func Init(ctx context.Context, opts InitOptions) (*InitResult, error) {
	dir := filepath.Clean(opts.Dir)
	if err := checkInitTarget(dir); err != nil {
		return nil, err
	}
	cfg := opts.Config
	kt, permDNS, permIP, err := prepare(&cfg)
	if err != nil {
		return nil, err
	}

	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, err
		}
		// A directory this init made is removed again when it fails (Remove leaves a
		// completed one alone: it is not empty).
		defer os.Remove(dir)
	}
	tmp, err := os.MkdirTemp(dir, config.InitTmpPrefix)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp) // empty after the move
	if err := os.Chmod(tmp, 0o750); err != nil {
		return nil, err
	}

	res := &InitResult{}
	if loopbackOnly(&cfg) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("certificates will name %s for CRL, OCSP and CA certificates: only this machine can fetch them. For a CA other machines use, init with their name for it: --dns ca.example.internal (and --external-url http://ca.example.internal:8080 if it differs).", cfg.ExternalURL))
	}
	var password []byte
	if opts.PasswordFile != "" {
		abs, err := filepath.Abs(opts.PasswordFile)
		if err != nil {
			return nil, err
		}
		if password, err = keys.ReadPassword(abs); err != nil {
			return nil, err
		}
		cfg.PasswordFile = abs
	} else {
		pw, err := keys.NewPassword()
		if err != nil {
			return nil, err
		}
		password = []byte(pw)
		if err := keys.WritePrivateFile(filepath.Join(tmp, passwordFile), []byte(pw+"\n")); err != nil {
			return nil, err
		}
		cfg.PasswordFile = passwordFile
		res.GeneratedPassword = filepath.Join(dir, passwordFile)
	}

	now := time.Now().UTC()
	rootKey, err := keys.Generate(kt)
	if err != nil {
		return nil, err
	}
	root, err := selfSign(cfg.Name+" Root CA", rootKey, kt, now)
	if err != nil {
		return nil, err
	}
	rootKeyPath := rootKeyFile
	if cfg.OfflineRoot {
		rootKeyPath = offlineRootKF
		res.OfflineRootKey = filepath.Join(dir, offlineRootKF)
	}
	if err := keys.WriteEncrypted(filepath.Join(tmp, rootKeyPath), rootKey, password); err != nil {
		return nil, err
	}
	if err := writeCert(filepath.Join(tmp, RootCertFile), root); err != nil {
		return nil, err
	}

	db, err := openDB(ctx, filepath.Join(tmp, cfg.Database.Path))
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := recordCert(ctx, db, root, IssuerRoot, "init", "init"); err != nil {
		return nil, err
	}

	inter := []struct {
		issuer, cn string
		eku        []x509.ExtKeyUsage
		unknownEKU []asn1.ObjectIdentifier
		constrain  bool
	}{
		{IssuerTLS, cfg.Name + " TLS Intermediate CA", []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}, nil, true},
		{IssuerNix, cfg.Name + " Nix Signing Intermediate CA", nil, []asn1.ObjectIdentifier{x509util.OIDNixStoreSigning}, false},
	}
	for _, in := range inter {
		k, err := keys.Generate(kt)
		if err != nil {
			return nil, err
		}
		serial, err := newSerial()
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber:          serial,
			Subject:               pkix.Name{CommonName: in.cn, Organization: []string{cfg.Name}},
			NotBefore:             now.Add(-keys.Backdate),
			NotAfter:              now.Add(intermediateValidity),
			KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           in.eku,
			UnknownExtKeyUsage:    in.unknownEKU,
			BasicConstraintsValid: true,
			IsCA:                  true,
			MaxPathLen:            0,
			MaxPathLenZero:        true,
			SignatureAlgorithm:    keys.SignatureAlgorithm(kt),
		}
		if in.constrain && (len(permDNS) > 0 || len(permIP) > 0) {
			tmpl.PermittedDNSDomainsCritical = true
			tmpl.PermittedDNSDomains = permDNS
			tmpl.PermittedIPRanges = permIP
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, root, k.Public(), rootKey)
		if err != nil {
			return nil, fmt.Errorf("signing the %s intermediate: %w", in.issuer, err)
		}
		cert, _ := x509.ParseCertificate(der)
		if err := keys.WriteEncrypted(filepath.Join(tmp, keyFile(in.issuer)), k, password); err != nil {
			return nil, err
		}
		if err := writeCert(filepath.Join(tmp, certFile(in.issuer)), cert); err != nil {
			return nil, err
		}
		if err := recordCert(ctx, db, cert, IssuerRoot, "init", "init"); err != nil {
			return nil, err
		}
	}
	if err := db.Close(); err != nil {
		return nil, err
	}

	// The configuration (or the state) is written last: its presence marks a complete
	// directory.
	marker := config.FileName
	var data []byte
	if opts.FromSettings {
		st := config.StateOf(cfg)
		if res.GeneratedPassword != "" {
			st.PasswordFile = cfg.PasswordFile
		}
		marker = config.StateFile
		data, err = st.Marshal()
	} else {
		data, err = cfg.Marshal()
	}
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, marker), data, 0o640); err != nil {
		return nil, err
	}
	if err := config.SyncDir(tmp); err != nil {
		return nil, err
	}
	if err := config.PlaceInitDir(tmp, dir, marker); err != nil {
		return nil, err
	}
	res.Root = root
	res.Config = cfg
	return res, nil
}

// prepare normalises and checks what creating a CA from cfg needs.
func prepare(cfg *config.Config) (keys.Type, []string, []*net.IPNet, error) {
	kt, err := keys.ParseType(cfg.KeyType)
	if err != nil {
		return "", nil, nil, fmt.Errorf("key_type: %w", err)
	}
	cfg.KeyType = string(kt)
	if err := validateServerNames(cfg); err != nil {
		return "", nil, nil, err
	}
	permDNS, permIP, err := parseConstraints(cfg.PermittedDNS, cfg.PermittedIP)
	if err != nil {
		return "", nil, nil, err
	}
	if err := serverNamesPermitted(cfg, permDNS, permIP); err != nil {
		return "", nil, nil, err
	}
	if cfg.ExternalURL == "" {
		cfg.ExternalURL = defaultExternalURL(cfg)
	}
	return kt, permDNS, permIP, cfg.Validate()
}

// CheckSettings reports what would stop a CA from being created from cfg, without
// touching any state.
func CheckSettings(cfg config.Config) error {
	_, _, _, err := prepare(&cfg)
	return err
}

// checkInitTarget refuses an initialised or non-empty directory.
func checkInitTarget(dir string) error {
	if config.Initialised(dir) {
		return fmt.Errorf("%s is already initialised: refusing to overwrite a CA; choose another --dir", dir)
	}
	return config.ClearInitTarget(dir, "CA (nixpki init)")
}

func selfSign(cn string, key crypto.Signer, kt keys.Type, now time.Time) (*x509.Certificate, error) {
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{strings.TrimSuffix(cn, " Root CA")}},
		NotBefore:             now.Add(-keys.Backdate),
		NotAfter:              now.Add(rootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            1,
		SignatureAlgorithm:    keys.SignatureAlgorithm(kt),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func writeCert(path string, c *x509.Certificate) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644)
}

// validateServerNames normalises and checks the names the server answers on.
func validateServerNames(cfg *config.Config) error {
	for i, n := range cfg.DNSNames {
		v, err := normalizeDNSName(n, false)
		if err != nil {
			return fmt.Errorf("--dns (dns_names): %w", err)
		}
		cfg.DNSNames[i] = v
	}
	for _, s := range cfg.IPAddresses {
		if net.ParseIP(strings.Trim(s, "[]")) == nil {
			return fmt.Errorf("--ip (ip_addresses): %q is not an IP address", s)
		}
	}
	if len(cfg.DNSNames)+len(cfg.IPAddresses) == 0 {
		return errors.New("the server needs at least one name: give --dns or --ip")
	}
	return nil
}

// serverNamesPermitted refuses server names outside the CA's own name constraints:
// the server could not issue its own HTTPS certificate.
func serverNamesPermitted(cfg *config.Config, permDNS []string, permIP []*net.IPNet) error {
	sans, err := ParseSANs(append(slices.Clone(cfg.DNSNames), cfg.IPAddresses...), false)
	if err != nil {
		return err
	}
	iss := &Issuer{Cert: &x509.Certificate{PermittedDNSDomains: permDNS, PermittedIPRanges: permIP}}
	if err := CheckNameConstraints(iss, sans); err != nil {
		return fmt.Errorf("server name %w: the CA could not issue its own HTTPS certificate; add it to --permitted-dns/--permitted-ip or leave it out of --dns/--ip", err)
	}
	return nil
}

// isLoopbackHost reports whether host names this machine only.
func isLoopbackHost(host string) bool {
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback()
	}
	return host == "localhost" || strings.HasSuffix(host, ".localhost")
}

// loopbackOnly reports whether the external URL names this machine only: every
// certificate's CRL and OCSP URLs are then unreachable from other machines.
func loopbackOnly(cfg *config.Config) bool {
	u, err := url.Parse(cfg.ExternalURL)
	return err == nil && isLoopbackHost(u.Hostname())
}

func hostForURL(n string) string {
	if strings.Contains(n, ":") {
		return "[" + strings.Trim(n, "[]") + "]"
	}
	return n
}

// defaultExternalURL builds http://<first name>:<http port>, preferring a name other
// machines can reach.
func defaultExternalURL(cfg *config.Config) string {
	host := "localhost"
	names := append(slices.Clone(cfg.DNSNames), cfg.IPAddresses...)
	if len(names) > 0 {
		host = hostForURL(names[0])
	}
	for _, n := range names {
		if !isLoopbackHost(n) {
			host = hostForURL(n)
			break
		}
	}
	_, port, err := net.SplitHostPort(cfg.HTTPListen)
	if err != nil || port == "" {
		port = "8080"
	}
	if port == "80" {
		return "http://" + host
	}
	return "http://" + host + ":" + port
}

func parseConstraints(dns, ips []string) ([]string, []*net.IPNet, error) {
	var outDNS []string
	for _, d := range dns {
		d = strings.ToLower(strings.TrimSpace(d))
		if d == "" {
			continue
		}
		if _, err := normalizeDNSName(strings.TrimPrefix(d, "."), false); err != nil {
			return nil, nil, fmt.Errorf("--permitted-dns (permitted_dns): %w", err)
		}
		outDNS = append(outDNS, d)
	}
	var outIP []*net.IPNet
	for _, s := range ips {
		_, n, err := net.ParseCIDR(strings.TrimSpace(s))
		if err != nil {
			return nil, nil, fmt.Errorf("--permitted-ip (permitted_ip): %q is not a CIDR range like 100.64.0.0/10", s)
		}
		outIP = append(outIP, n)
	}
	return outDNS, outIP, nil
}
