package gate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"
	"unicode"

	"nixpki/internal/config"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/nixcert"
)

// Files in a gate directory.
const (
	ConfigFile   = "config.json"
	PublicFile   = "gate.pub"          // the gate's Nix public key, NAME:base64
	SecretFile   = "gate.sec"          // its Ed25519 key, encrypted PKCS#8 PEM (0600)
	RootFile     = "root.crt"          // the CA root the gate trusts
	DBFile       = "gate.db"           // SQLite: NARs, paths, certificates, CRLs
	NARDir       = "nar"               // NAR files, named as their URLs
	LogDir       = "log"               // the tamper-evident log (internal/tlog)
	ACMECacheDir = "acme"              // certificates obtained over ACME
	passwordFile = "secrets/password"  // default password file
	tmpDir       = NARDir + "/.upload" // uploads in progress
)

// Threshold raises the number of signatures needed for store paths whose base name
// ("<hash>-<name>") or name matches Pattern (path.Match syntax).
type Threshold struct {
	Pattern    string `json:"pattern"`
	SigsNeeded int    `json:"sigs_needed"`
}

// TLS names certificate and key files (PEM; the key unencrypted or encrypted with
// the gate's password). They are re-read when they change on disk.
type TLS struct {
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
}

// ACME obtains the gate's HTTPS certificate from an ACME directory (nixpki serve's
// /acme/directory) with the TLS-ALPN-01 challenge on the gate's own port.
type ACME struct {
	Directory string   `json:"directory,omitempty"`
	Names     []string `json:"names,omitempty"` // default: the gate's name
	Email     string   `json:"email,omitempty"`
}

// Config is G/config.json. Unknown keys are an error naming the key.
type Config struct {
	// Name is the gate's name as certificates' targets name it.
	Name string `json:"name"`
	// KeyName is the Nix name of the gate's key (default "<name>-gate-1").
	KeyName string `json:"key_name"`
	// PasswordFile decrypts gate.sec (relative to the directory).
	PasswordFile string `json:"password_file"`
	// Listen is the address to serve on; without TLS or ACME only loopback.
	Listen string `json:"listen"`
	// URL is how targets reach the gate, for the NixOS snippet.
	URL      string `json:"url"`
	StoreDir string `json:"store_dir"`
	Priority int    `json:"priority"`

	// SigsNeeded is how many distinct certified identities must sign a path
	// (default 1); Thresholds raise it for matching names (the highest match wins).
	SigsNeeded int         `json:"sigs_needed"`
	Thresholds []Threshold `json:"thresholds,omitempty"`
	// MaxCRLAge: a signature counts only if the newest CRL held for its issuer was
	// issued at most this long ago (fail closed; 0 = any age, but a CRL is needed).
	MaxCRLAge config.Duration `json:"max_crl_age"`
	// CRLURLs are fetched every CRLFetchInterval (0 = never); empty means the CRL
	// distribution points of the member certificates held.
	CRLURLs          []string        `json:"crl_urls,omitempty"`
	CRLFetchInterval config.Duration `json:"crl_fetch_interval"`

	// MaxNARSize bounds a NAR, uncompressed and compressed (bytes).
	MaxNARSize int64 `json:"max_nar_size"`
	// StagingMaxBytes bounds NARs received but not yet claimed by a narinfo;
	// StagingMaxAge is how long such a NAR is kept.
	StagingMaxBytes int64           `json:"staging_max_bytes"`
	StagingMaxAge   config.Duration `json:"staging_max_age"`
	// PendingMaxAge is how long a path short of signatures waits.
	PendingMaxAge config.Duration `json:"pending_max_age"`
	// MaxXZDict bounds the dictionary an xz upload may declare (bytes).
	MaxXZDict int64 `json:"max_xz_dict"`

	TLS  TLS  `json:"tls"`
	ACME ACME `json:"acme"`

	// RootFile is the CA root certificate (PEM) a gate created from settings trusts;
	// it is copied into the directory at the first start, and a later different one
	// is refused.
	RootFile string `json:"root_file,omitempty"`
	// KeyFile is the gate's Nix secret key (nix-store --generate-binary-cache-key
	// format, made out of band so the targets' trusted key is known before the
	// deployment), read at every start; without it the key lives in gate.sec.
	KeyFile string `json:"key_file,omitempty"`
}

// DefaultConfig returns the defaults for a gate called name.
func DefaultConfig(name string) Config {
	return Config{
		Name:             name,
		KeyName:          name + "-gate-1",
		PasswordFile:     passwordFile,
		Listen:           "127.0.0.1:8501",
		URL:              "http://127.0.0.1:8501",
		StoreDir:         storepath.DefaultStoreDir,
		Priority:         30,
		SigsNeeded:       1,
		MaxCRLAge:        config.Duration(8 * 24 * time.Hour),
		CRLFetchInterval: config.Duration(5 * time.Minute),
		MaxNARSize:       8 << 30,
		StagingMaxBytes:  4 << 30,
		StagingMaxAge:    config.Duration(time.Hour),
		PendingMaxAge:    config.Duration(14 * 24 * time.Hour),
		MaxXZDict:        64 << 20,
	}
}

// LoadConfig reads dir/config.json strictly and validates it.
func LoadConfig(dir string) (Config, error) {
	p := filepath.Join(dir, ConfigFile)
	data, err := config.ReadSettings(p)
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseSettings(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", p, err)
	}
	return cfg, nil
}

// Marshal renders the configuration as written to config.json.
func (c Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	return append(b, '\n'), err
}

// Validate checks every field.
func (c Config) Validate() error {
	if err := nixcert.ValidateTarget(c.Name); err != nil || strings.ContainsAny(c.Name, "*?[]\\") {
		return fmt.Errorf("name %q: a gate name is what certificates' targets match: letters, digits, '.', '-', no glob characters", c.Name)
	}
	if err := signing.ValidateKeyName(c.KeyName); err != nil {
		return fmt.Errorf("key_name: %w", err)
	}
	if err := storepath.ValidateStoreDir(c.StoreDir); err != nil {
		return fmt.Errorf("store_dir: %w", err)
	}
	if c.SigsNeeded < 1 || c.SigsNeeded > 64 {
		return fmt.Errorf("sigs_needed %d: must be 1 to 64", c.SigsNeeded)
	}
	for _, t := range c.Thresholds {
		if _, err := path.Match(t.Pattern, ""); err != nil || t.Pattern == "" {
			return fmt.Errorf("thresholds: pattern %q is not a valid glob", t.Pattern)
		}
		if t.SigsNeeded < 1 || t.SigsNeeded > 64 {
			return fmt.Errorf("thresholds: pattern %q: sigs_needed %d must be 1 to 64", t.Pattern, t.SigsNeeded)
		}
	}
	switch {
	case c.MaxCRLAge < 0:
		return errors.New("max_crl_age must not be negative")
	case c.CRLFetchInterval < 0 || (c.CRLFetchInterval > 0 && c.CRLFetchInterval.D() < time.Second):
		return errors.New("crl_fetch_interval must be 0 (never fetch) or at least 1s")
	case c.MaxNARSize < 1<<10:
		return fmt.Errorf("max_nar_size %d is too small", c.MaxNARSize)
	case c.StagingMaxBytes < 1<<10:
		return fmt.Errorf("staging_max_bytes %d is too small", c.StagingMaxBytes)
	case c.StagingMaxAge.D() < time.Minute:
		return errors.New("staging_max_age must be at least 1m")
	case c.PendingMaxAge.D() < time.Minute:
		return errors.New("pending_max_age must be at least 1m")
	case c.MaxXZDict < 1<<20 || c.MaxXZDict > 1<<30:
		return fmt.Errorf("max_xz_dict %d must be 1 MiB to 1 GiB", c.MaxXZDict)
	}
	for _, u := range c.CRLURLs {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			return fmt.Errorf("crl_urls: %q is not an http:// or https:// URL", u)
		}
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return errors.New("tls: give both cert_file and key_file, or neither")
	}
	if c.TLS.CertFile != "" && c.ACME.Directory != "" {
		return errors.New("tls and acme are exclusive: give certificate files or an ACME directory")
	}
	return nil
}

// SigsNeededFor returns how many distinct identities must sign storePath and the rule
// that says so. A pattern is matched against the base name and the name, each also
// with a "-" appended, so that a pattern written for versioned names ("*-sudo-*")
// also covers the unversioned one ("<hash>-sudo"); and again with both pattern and
// name normalised (NormaliseName), so that "SUDO-1.9", "sudo_1.9" and "Sudo.1.9" need
// what "*-sudo-*" needs. A pattern raises a threshold, so matching too much asks for
// more signatures, while matching too little would let a protected path in on fewer.
func (c Config) SigsNeededFor(storePath string) (int, string) {
	base := storePath[strings.LastIndexByte(storePath, '/')+1:]
	name := storepath.NamePart(base)
	raw := [...]string{base, base + "-", name, name + "-"}
	var norm [len(raw)]string
	for i, s := range raw {
		norm[i] = NormaliseName(s)
	}
	n, rule := c.SigsNeeded, fmt.Sprintf("sigs_needed %d", c.SigsNeeded)
	for _, t := range c.Thresholds {
		if t.SigsNeeded > n && (matchAny(t.Pattern, raw[:]) || matchAny(NormaliseName(t.Pattern), norm[:])) {
			n, rule = t.SigsNeeded, fmt.Sprintf("pattern %s needs %d", t.Pattern, t.SigsNeeded)
		}
	}
	return n, rule
}

func matchAny(pattern string, names []string) bool {
	for _, name := range names {
		if m, _ := path.Match(pattern, name); m {
			return true
		}
	}
	return false
}

// NormaliseName is how threshold patterns and path names compare: lower case, with
// '.', '_' and '+' read as '-'.
func NormaliseName(s string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '_', '+':
			return '-'
		}
		return unicode.ToLower(r)
	}, s)
}

// TLSEnabled reports whether the gate serves HTTPS.
func (c Config) TLSEnabled() bool { return c.TLS.CertFile != "" || c.ACME.Directory != "" }

// IsLoopback reports whether a listen address binds only loopback interfaces.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
