package gate

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/nix/signing"
)

// StateFile marks a gate directory created from a settings file (gate serve --config)
// and records what its first start decided; the settings themselves stay outside.
const StateFile = "state.json"

// State is what a gate created from settings records.
type State struct {
	Name       string `json:"name"`
	KeyName    string `json:"key_name"`
	PublicKey  string `json:"public_key"`
	RootSHA256 string `json:"root_sha256"`
}

// ParseSettings reads a gate's settings strictly (unknown keys named, every problem on
// its own line) over the defaults for the gate's name, and validates them.
func ParseSettings(data []byte) (Config, error) {
	var probe struct {
		Name string `json:"name"`
	}
	json.Unmarshal(data, &probe)
	cfg := DefaultConfig(probe.Name)
	if err := config.DecodeStrict(data, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	for key, p := range map[string]string{"password_file": cfg.PasswordFile, "key_file": cfg.KeyFile} {
		if err := config.CheckSecretPath(key, p); err != nil {
			return cfg, err
		}
	}
	return cfg, nil
}

// Initialised reports whether dir holds a gate (made by gate init or a first start).
func Initialised(dir string) bool {
	for _, f := range []string{ConfigFile, StateFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// loadSettings reads the settings file for the gate in dir and checks it against what
// the directory recorded; secret paths come back resolved.
func loadSettings(dir, settingsFile string) (Config, error) {
	data, err := config.ReadSettings(settingsFile)
	if err != nil {
		return Config{}, err
	}
	cfg, err := ParseSettings(data)
	if err != nil {
		return cfg, fmt.Errorf("%s: %w", settingsFile, err)
	}
	recorded, err := recordedName(dir)
	if err != nil {
		return cfg, err
	}
	if recorded != cfg.Name {
		return cfg, fmt.Errorf("%s: name = %q contradicts the gate in %s, created with name = %q: a gate's name cannot change (restore it, or start a new gate in an empty directory)", settingsFile, cfg.Name, dir, recorded)
	}
	if cfg.RootFile != "" {
		root, err := readSettingsRoot(dir, cfg.RootFile)
		if err != nil {
			return cfg, err
		}
		have, err := ReadRoot(dir)
		if err != nil {
			return cfg, err
		}
		if !bytes.Equal(have.Raw, root.Raw) {
			return cfg, fmt.Errorf("%s: root_file %s (SHA-256 %s) contradicts the root the gate in %s was created with (SHA-256 %s): the trusted root cannot change (restore it, or start a new gate)",
				settingsFile, cfg.RootFile, sha256Hex(root.Raw), dir, sha256Hex(have.Raw))
		}
	}
	return cfg, resolveSecrets(dir, &cfg)
}

// recordedName is the name a gate directory was created with.
func recordedName(dir string) (string, error) {
	for _, f := range []string{StateFile, ConfigFile} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		var rec struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(data, &rec); err != nil {
			return "", fmt.Errorf("%s: %w", filepath.Join(dir, f), err)
		}
		return rec.Name, nil
	}
	return "", fmt.Errorf("%s holds no gate (no %s or %s)", dir, StateFile, ConfigFile)
}

// resolveSecrets turns the settings' secret paths ($CREDENTIALS_DIRECTORY/NAME or
// relative to dir) into the files to read.
func resolveSecrets(dir string, cfg *Config) error {
	var err error
	if cfg.PasswordFile, err = config.SecretPath(dir, cfg.PasswordFile); err != nil {
		return fmt.Errorf("password_file: %w", err)
	}
	if cfg.KeyFile != "" {
		if cfg.KeyFile, err = config.SecretPath(dir, cfg.KeyFile); err != nil {
			return fmt.Errorf("key_file: %w", err)
		}
	}
	return nil
}

func readSettingsRoot(dir, p string) (*x509.Certificate, error) {
	path, err := config.SecretPath(dir, p)
	if err != nil {
		return nil, fmt.Errorf("root_file: %w", err)
	}
	root, err := readRootCert(path)
	if err != nil {
		return nil, fmt.Errorf("root_file: %w", err)
	}
	return root, nil
}

// readKeyFile reads the gate's Nix secret key (nix-store --generate-binary-cache-key
// format, 0600) named by key_file.
func readKeyFile(path, keyName string) (signing.SecretKey, error) {
	data, err := keys.ReadPrivateFile(path)
	if err != nil {
		return signing.SecretKey{}, fmt.Errorf("key_file: %w", err)
	}
	sec, err := signing.ParseSecretKey(data)
	if err != nil {
		return signing.SecretKey{}, fmt.Errorf("key_file %s: not a Nix secret key (make one with nixpki gate key generate): %w", path, err)
	}
	if sec.Name != keyName {
		return signing.SecretKey{}, fmt.Errorf("key_file %s holds the key %q but key_name is %q: set key_name to the key's name", path, sec.Name, keyName)
	}
	return sec, nil
}

// OpenSettings opens the gate in dir with its settings from settingsFile (empty: from
// G/config.json); on a directory without a gate it creates one from the settings
// first. The second result says whether it did.
func OpenSettings(dir, settingsFile, passwordFile string, log *slog.Logger) (*Gate, bool, error) {
	if settingsFile == "" {
		g, err := Open(dir, passwordFile, log)
		return g, false, err
	}
	created := false
	if !Initialised(dir) {
		if err := initFromSettings(dir, settingsFile, passwordFile); err != nil {
			return nil, false, err
		}
		created = true
	}
	cfg, err := loadSettings(dir, settingsFile)
	if err != nil {
		return nil, false, err
	}
	g, err := open(dir, cfg, passwordFile, log)
	return g, created, err
}

func initFromSettings(dir, settingsFile, passwordFile string) error {
	data, err := config.ReadSettings(settingsFile)
	if err != nil {
		return err
	}
	cfg, err := ParseSettings(data)
	if err != nil {
		return fmt.Errorf("%s: %w", settingsFile, err)
	}
	if cfg.RootFile == "" {
		return fmt.Errorf("%s: root_file is required to create the gate: the CA root certificate (PEM) it trusts", settingsFile)
	}
	rootPath, err := config.SecretPath(dir, cfg.RootFile)
	if err != nil {
		return fmt.Errorf("%s: root_file: %w", settingsFile, err)
	}
	opts := InitOptions{Dir: dir, Name: cfg.Name, RootFile: rootPath, PasswordFile: passwordFile, settings: &cfg}
	if passwordFile == "" && cfg.PasswordFile != DefaultConfig(cfg.Name).PasswordFile {
		if opts.PasswordFile, err = config.SecretPath(dir, cfg.PasswordFile); err != nil {
			return fmt.Errorf("%s: password_file: %w", settingsFile, err)
		}
	}
	if cfg.KeyFile != "" {
		p, err := config.SecretPath(dir, cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("%s: key_file: %w", settingsFile, err)
		}
		if opts.key, err = readKeyFile(p, cfg.KeyName); err != nil {
			return err
		}
	}
	// Built inside dir (a systemd StateDirectory may be all the service can write)
	// and moved into place, state.json last: an interrupted start leaves nothing that
	// looks like a gate.
	if err := config.ClearInitTarget(dir, "gate"); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(dir, config.InitTmpPrefix)
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	opts.Dir = tmp
	if _, _, err := Init(opts); err != nil {
		return fmt.Errorf("creating the gate from %s: %w", settingsFile, err)
	}
	return config.PlaceInitDir(tmp, dir, StateFile)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
