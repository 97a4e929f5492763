package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"nixpki/internal/keys"
)

// StateFile records, in a directory created from a settings file, what the first start
// decided: the creation-only settings and a generated password's place. Its presence
// marks the directory as initialised (as D/config.json does for a directory made by
// `nixpki init`).
const StateFile = "state.json"

// EnvConfig names the settings file when no --config flag is given.
const EnvConfig = "NIXPKI_CONFIG"

// State is what a CA directory created from a settings file records. Its keys are the
// settings' own, so it reads back onto a Config.
type State struct {
	Name         string   `json:"name"`
	KeyType      string   `json:"key_type"`
	DNSNames     []string `json:"dns_names"`
	IPAddresses  []string `json:"ip_addresses"`
	PermittedDNS []string `json:"permitted_dns"`
	PermittedIP  []string `json:"permitted_ip"`
	OfflineRoot  bool     `json:"offline_root"`
	// PasswordFile is recorded only when the first start generated the password
	// inside the directory.
	PasswordFile string `json:"password_file,omitempty"`
}

// StateOf extracts the creation-only settings of c.
func StateOf(c Config) State {
	// Copies: decoding settings over a Config reuses its slices' arrays.
	return State{Name: c.Name, KeyType: c.KeyType, DNSNames: slices.Clone(c.DNSNames), IPAddresses: slices.Clone(c.IPAddresses),
		PermittedDNS: slices.Clone(c.PermittedDNS), PermittedIP: slices.Clone(c.PermittedIP), OfflineRoot: c.OfflineRoot}
}

// Marshal renders the state as written to D/state.json.
func (s State) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	return append(b, '\n'), err
}

// Initialised reports whether dir holds a CA (made by init or by a first start).
func Initialised(dir string) bool {
	for _, f := range []string{FileName, StateFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

// ReadSettings reads a settings file, bounded in size.
func ReadSettings(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("settings: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSettingsBytes+1))
	if err != nil {
		return nil, fmt.Errorf("settings %s: %w", path, err)
	}
	if len(data) > maxSettingsBytes {
		return nil, fmt.Errorf("settings %s: larger than %d bytes", path, maxSettingsBytes)
	}
	return data, nil
}

// LoadDir returns the configuration of the CA in dir. With settingsFile empty it reads
// D/config.json. Otherwise the settings come from settingsFile over what the directory
// recorded at creation; a creation-only setting that contradicts the record is an
// error naming both values.
func LoadDir(dir, settingsFile string) (Config, error) {
	c, err := loadDir(dir, settingsFile)
	if err != nil {
		return c, err
	}
	if u := os.Getenv(DatabaseURLEnv); u != "" {
		c.Database.URL = u
		if err := c.Database.validate(); err != nil {
			return c, fmt.Errorf("%s: %w", DatabaseURLEnv, err)
		}
	}
	return c, nil
}

func loadDir(dir, settingsFile string) (Config, error) {
	legacy := filepath.Join(dir, FileName)
	data, err := os.ReadFile(legacy)
	haveLegacy := err == nil
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Config{}, err
	}
	var base Config
	if haveLegacy {
		if err := keys.CheckNotWorldWritable(legacy); err != nil {
			return Config{}, err
		}
		if base, err = Parse(data); err != nil {
			return base, fmt.Errorf("%s: %w", legacy, err)
		}
	}
	if settingsFile == "" {
		if haveLegacy {
			return base, nil
		}
		if _, err := os.Stat(filepath.Join(dir, StateFile)); err == nil {
			return Config{}, fmt.Errorf("%s was created from a settings file: give it with --config FILE (or %s=FILE)", dir, EnvConfig)
		}
		return Config{}, fmt.Errorf("%s is not an initialised nixpki directory (no %s): run `nixpki init --dir %s` first", dir, FileName, dir)
	}
	if !haveLegacy {
		statePath := filepath.Join(dir, StateFile)
		sdata, err := os.ReadFile(statePath)
		if errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("%s is not an initialised nixpki directory (no %s): `nixpki serve --config %s --dir %s` creates it", dir, StateFile, settingsFile, dir)
		}
		if err != nil {
			return Config{}, err
		}
		base = Defaults()
		if err := json.Unmarshal(sdata, &base); err != nil {
			return Config{}, fmt.Errorf("%s: %w", statePath, err)
		}
	}
	recorded := StateOf(base)
	settings, err := ReadSettings(settingsFile)
	if err != nil {
		return Config{}, err
	}
	c, err := ParseOnto(base, settings)
	if err != nil {
		return c, fmt.Errorf("%s: %w", settingsFile, err)
	}
	if err := Contradictions(dir, recorded, StateOf(c)); err != nil {
		return c, fmt.Errorf("%s: %w", settingsFile, err)
	}
	return c, nil
}

// Contradictions compares creation-only settings with what dir recorded, one error
// line per differing key.
func Contradictions(dir string, recorded, now State) error {
	var errs []error
	diff := func(key string, rec, got any) {
		errs = append(errs, fmt.Errorf("%s = %s contradicts the CA in %s, created with %s = %s: creation-only settings cannot change (restore the recorded value, or start a new CA in an empty directory)",
			key, show(got), dir, key, show(rec)))
	}
	if recorded.Name != now.Name {
		diff("name", recorded.Name, now.Name)
	}
	if !strings.EqualFold(recorded.KeyType, now.KeyType) {
		diff("key_type", recorded.KeyType, now.KeyType)
	}
	if !sameSet(recorded.DNSNames, now.DNSNames, normDNS) {
		diff("dns_names", recorded.DNSNames, now.DNSNames)
	}
	if !sameSet(recorded.IPAddresses, now.IPAddresses, normIP) {
		diff("ip_addresses", recorded.IPAddresses, now.IPAddresses)
	}
	if !sameSet(recorded.PermittedDNS, now.PermittedDNS, normDNS) {
		diff("permitted_dns", recorded.PermittedDNS, now.PermittedDNS)
	}
	if !sameSet(recorded.PermittedIP, now.PermittedIP, normCIDR) {
		diff("permitted_ip", recorded.PermittedIP, now.PermittedIP)
	}
	if recorded.OfflineRoot != now.OfflineRoot {
		diff("offline_root", recorded.OfflineRoot, now.OfflineRoot)
	}
	return errors.Join(errs...)
}

func show(v any) string {
	b, _ := json.Marshal(v)
	if string(b) == "null" {
		return "[]"
	}
	return string(b)
}

func sameSet(a, b []string, norm func(string) string) bool {
	na, nb := make([]string, 0, len(a)), make([]string, 0, len(b))
	for _, s := range a {
		na = append(na, norm(s))
	}
	for _, s := range b {
		nb = append(nb, norm(s))
	}
	slices.Sort(na)
	slices.Sort(nb)
	return slices.Equal(slices.Compact(na), slices.Compact(nb))
}

func normDNS(s string) string { return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".") }

func normIP(s string) string {
	if ip := net.ParseIP(strings.Trim(strings.TrimSpace(s), "[]")); ip != nil {
		return ip.String()
	}
	return s
}

func normCIDR(s string) string {
	if _, n, err := net.ParseCIDR(strings.TrimSpace(s)); err == nil {
		return n.String()
	}
	return s
}

// credentialsVar is systemd's directory of a unit's credentials (LoadCredential).
const credentialsVar = "CREDENTIALS_DIRECTORY"

// SecretPath resolves a secret's path from the settings: "$CREDENTIALS_DIRECTORY/NAME"
// (or "${CREDENTIALS_DIRECTORY}/NAME") is looked up in systemd's credential directory,
// a relative path is inside dir.
func SecretPath(dir, p string) (string, error) {
	for _, pre := range []string{"$" + credentialsVar + "/", "${" + credentialsVar + "}/"} {
		if rest, ok := strings.CutPrefix(p, pre); ok {
			cd := os.Getenv(credentialsVar)
			if cd == "" {
				return "", fmt.Errorf("%s names $%s, which is not set: run under systemd with LoadCredential, or give the file's path", p, credentialsVar)
			}
			return filepath.Join(cd, rest), nil
		}
	}
	return Resolve(dir, p), nil
}

// CheckSecretPath refuses a secret stored in /nix/store, which every local user can
// read; key names the setting.
func CheckSecretPath(key, p string) error {
	if strings.HasPrefix(filepath.Clean(p), "/nix/store/") {
		return fmt.Errorf("%s %s is in /nix/store, which every user can read: keep the secret outside the store and pass it with LoadCredential ($CREDENTIALS_DIRECTORY/NAME)", key, p)
	}
	return nil
}
