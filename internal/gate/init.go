package gate

import (
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/nix/signing"
	"nixpki/internal/tlog"
	"nixpki/internal/x509util"
)

// InitOptions are what `nixpki gate init` takes.
type InitOptions struct {
	Dir, Name, RootFile string
	// PasswordFile encrypts gate.sec; empty generates one in G/secrets/password.
	PasswordFile string
	KeyName      string // default "<name>-gate-1"
	URL          string // default: http://<listen>, or https://<name>:<port> with TLS
	Listen       string // default 127.0.0.1:8501
	// TLSCertFile and TLSKeyFile, or ACMEDirectory, make the gate serve HTTPS.
	TLSCertFile, TLSKeyFile, ACMEDirectory string

	// settings, for a gate created from a settings file, is its whole configuration:
	// the directory then records state.json instead of config.json, written last.
	settings *Config
	// key, when set, is the gate's key from key_file; gate.sec is not written.
	key signing.SecretKey
}

// Init creates a gate directory: config, the gate's Nix key (gate.sec encrypted at
// rest, gate.pub), the trusted root, the database and the log.
func Init(opts InitOptions) (Config, signing.PublicKey, error) {
	var pub signing.PublicKey
	cfg := DefaultConfig(opts.Name)
	if opts.settings != nil {
		cfg = *opts.settings
	}
	if opts.KeyName != "" {
		cfg.KeyName = opts.KeyName
	}
	if opts.Listen != "" {
		cfg.Listen = opts.Listen
	}
	if opts.settings == nil {
		for _, f := range []*string{&opts.TLSCertFile, &opts.TLSKeyFile} {
			if *f != "" {
				abs, err := filepath.Abs(*f)
				if err != nil {
					return cfg, pub, err
				}
				*f = abs
			}
		}
		cfg.TLS = TLS{CertFile: opts.TLSCertFile, KeyFile: opts.TLSKeyFile}
		cfg.ACME.Directory = opts.ACMEDirectory
		cfg.URL = defaultURL(cfg)
		if opts.URL != "" {
			cfg.URL = strings.TrimRight(opts.URL, "/")
		}
	}
	if !cfg.TLSEnabled() && !IsLoopback(cfg.Listen) {
		return cfg, pub, fmt.Errorf("--listen %s: plain HTTP is only served on loopback; give --tls-cert and --tls-key, or --acme-directory, to serve HTTPS there", cfg.Listen)
	}
	if err := cfg.Validate(); err != nil {
		return cfg, pub, err
	}
	if opts.RootFile == "" {
		return cfg, pub, errors.New("--root is required: the CA root certificate the gate trusts")
	}
	root, err := readRootCert(opts.RootFile)
	if err != nil {
		return cfg, pub, fmt.Errorf("root: %w", err)
	}
	if Initialised(opts.Dir) {
		return cfg, pub, fmt.Errorf("%s already holds a gate", opts.Dir)
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, tmpDir), 0o700); err != nil {
		return cfg, pub, err
	}
	var password []byte
	if opts.PasswordFile == "" {
		pw, err := keys.NewPassword()
		if err != nil {
			return cfg, pub, err
		}
		if err := keys.WritePrivateFile(filepath.Join(opts.Dir, passwordFile), []byte(pw+"\n")); err != nil {
			return cfg, pub, err
		}
		password = []byte(pw)
	} else {
		abs, err := filepath.Abs(opts.PasswordFile)
		if err != nil {
			return cfg, pub, err
		}
		if password, err = keys.ReadPassword(abs); err != nil {
			return cfg, pub, err
		}
		cfg.PasswordFile = abs
	}
	sec := opts.key
	if sec.Key == nil {
		if sec, err = signing.GenerateKey(cfg.KeyName); err != nil {
			return cfg, pub, err
		}
		if err := keys.WriteEncrypted(filepath.Join(opts.Dir, SecretFile), sec.Key, password); err != nil {
			return cfg, pub, err
		}
	}
	pub = sec.Public()
	if err := os.WriteFile(filepath.Join(opts.Dir, PublicFile), []byte(pub.String()), 0o644); err != nil {
		return cfg, pub, err
	}
	if err := os.WriteFile(filepath.Join(opts.Dir, RootFile), x509util.ChainPEM(root), 0o644); err != nil {
		return cfg, pub, err
	}
	if opts.settings == nil {
		data, err := cfg.Marshal()
		if err != nil {
			return cfg, pub, err
		}
		if err := os.WriteFile(filepath.Join(opts.Dir, ConfigFile), data, 0o600); err != nil {
			return cfg, pub, err
		}
	}
	db, err := openDB(filepath.Join(opts.Dir, DBFile))
	if err != nil {
		return cfg, pub, err
	}
	db.Close()
	logDir := filepath.Join(opts.Dir, LogDir)
	if err := tlog.Create(logDir, cfg.Name, sec.Key); err != nil {
		return cfg, pub, err
	}
	l, err := tlog.Open(logDir, sec.Key)
	if err != nil {
		return cfg, pub, err
	}
	defer l.Close()
	rootSum := sha256.Sum256(root.Raw)
	_, _, err = l.Append("init", map[string]string{"gate": cfg.Name, "key": pub.String(), "root": root.Subject.CommonName, "root_sha256": hex.EncodeToString(rootSum[:])})
	if err != nil || opts.settings == nil {
		return cfg, pub, err
	}
	// A gate created from settings is marked complete last, by its state.
	st, err := json.MarshalIndent(State{Name: cfg.Name, KeyName: cfg.KeyName, PublicKey: pub.String(), RootSHA256: hex.EncodeToString(rootSum[:])}, "", "  ")
	if err != nil {
		return cfg, pub, err
	}
	return cfg, pub, keys.ReplaceFile(filepath.Join(opts.Dir, StateFile), append(st, '\n'), 0o640)
}

// readRootCert reads a self-signed CA certificate (PEM).
func readRootCert(path string) (*x509.Certificate, error) {
	root, err := x509util.ReadCertFile(path)
	if err != nil {
		return nil, err
	}
	if !root.IsCA || root.CheckSignatureFrom(root) != nil {
		return nil, fmt.Errorf("%s is not a self-signed CA certificate", path)
	}
	return root, nil
}

// defaultURL is how targets reach the gate as configured: plain HTTP on its loopback
// address, or HTTPS by its name on its port.
func defaultURL(cfg Config) string {
	if !cfg.TLSEnabled() {
		return "http://" + cfg.Listen
	}
	_, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil || port == "443" {
		return "https://" + cfg.Name
	}
	return "https://" + net.JoinHostPort(cfg.Name, port)
}

// NixOSSnippet is the NixOS configuration that makes a target substitute from the
// gate and trust only the gate's key for it.
func NixOSSnippet(cfg Config, pub signing.PublicKey) string {
	return fmt.Sprintf(`nix.settings = {
  substituters = [ "%s" ];
  trusted-public-keys = [ "%s" ];
  require-sigs = true;
};
`, cfg.URL, pub)
}

// LoadKey decrypts the gate's key (or reads key_file). passwordFile overrides the
// configured one.
func LoadKey(dir string, cfg Config, passwordFile string) (signing.SecretKey, error) {
	if cfg.KeyFile != "" {
		sec, err := readKeyFile(cfg.KeyFile, cfg.KeyName)
		if err != nil {
			return sec, err
		}
		pub, err := ReadPublic(dir)
		if err != nil {
			return signing.SecretKey{}, err
		}
		if !pub.Equal(sec.Public()) {
			return signing.SecretKey{}, fmt.Errorf("key_file %s holds the key %s, but the gate in %s was created with %s: a gate's key cannot change (restore the key, or start a new gate)", cfg.KeyFile, sec.Public(), dir, pub)
		}
		return sec, nil
	}
	if passwordFile == "" {
		passwordFile = config.Resolve(dir, cfg.PasswordFile)
	}
	password, err := keys.ReadPassword(passwordFile)
	if err != nil {
		return signing.SecretKey{}, err
	}
	signer, err := keys.LoadSigner(filepath.Join(dir, SecretFile), password)
	if err != nil {
		return signing.SecretKey{}, err
	}
	k, ok := signer.(ed25519.PrivateKey)
	if !ok {
		return signing.SecretKey{}, fmt.Errorf("%s is a %T key, not Ed25519", SecretFile, signer)
	}
	sec := signing.SecretKey{Name: cfg.KeyName, Key: k}
	pub, err := ReadPublic(dir)
	if err != nil {
		return signing.SecretKey{}, err
	}
	if !pub.Equal(sec.Public()) {
		return signing.SecretKey{}, fmt.Errorf("%s does not match %s (key name %q in config)", PublicFile, SecretFile, cfg.KeyName)
	}
	return sec, nil
}

// ReadPublic reads G/gate.pub.
func ReadPublic(dir string) (signing.PublicKey, error) {
	data, err := os.ReadFile(filepath.Join(dir, PublicFile))
	if err != nil {
		return signing.PublicKey{}, err
	}
	return signing.ParsePublicKey(data)
}

// ReadRoot reads G/root.crt.
func ReadRoot(dir string) (*x509.Certificate, error) {
	return x509util.ReadCertFile(filepath.Join(dir, RootFile))
}
