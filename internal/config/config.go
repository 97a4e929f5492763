// Package config reads nixpki's settings: D/config.json, or a settings file anywhere
// (`--config`, e.g. in /nix/store) with the state directory holding only state. Its
// shape maps one-to-one onto a NixOS module's `settings` attrset (JSON, snake_case
// keys); an unknown key is an error naming the key, and command-line flags override
// what the file says.
package config

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// FileName is the configuration file inside a data directory.
const FileName = "config.json"

// Config is the whole configuration of a CA data directory.
type Config struct {
	// Name is the CA's common-name prefix ("<name> Root CA").
	Name string `json:"name"`
	// KeyType of the CA keys: p256, p384, ed25519, rsa3072.
	KeyType string `json:"key_type"`
	// PasswordFile holds the password of the CA keys; relative paths are inside the
	// data directory.
	PasswordFile string `json:"password_file"`
	// DNSNames and IPAddresses are the names the server answers on (its own TLS
	// certificate carries them).
	DNSNames    []string `json:"dns_names"`
	IPAddresses []string `json:"ip_addresses"`
	// PermittedDNS and PermittedIP become X.509 name constraints on the TLS
	// intermediate: it cannot vouch for names outside them.
	PermittedDNS []string `json:"permitted_dns,omitempty"`
	PermittedIP  []string `json:"permitted_ip,omitempty"`
	// ExternalURL is the plain-HTTP base used for CRL, OCSP and caIssuers URLs in
	// certificates, e.g. http://ca.internal:8080.
	ExternalURL string `json:"external_url"`
	// ExternalHTTPSURL is the HTTPS base clients reach the server at when that is not
	// its own listen address: a load balancer in front of several servers, e.g.
	// https://ca.internal. ACME URLs are built on it. Empty: the listen address.
	ExternalHTTPSURL string `json:"external_https_url,omitempty"`
	// Listen is the HTTPS address; HTTPListen the plain-HTTP one (CRL, OCSP, CA certs).
	Listen     string `json:"listen"`
	HTTPListen string `json:"http_listen"`
	// OfflineRoot records that the root key was handed to the operator at init.
	OfflineRoot bool     `json:"offline_root,omitempty"`
	Database    Database `json:"database"`
	Policy      Policy   `json:"policy"`
	ACME        ACME     `json:"acme"`
	Nix         Nix      `json:"nix"`
	Monitor     Monitor  `json:"monitor"`
}

// Monitor bounds what /metrics and `nixpki doctor` report about renewal.
type Monitor struct {
	// Window: names the CA issued for (through ACME or direct issuance) within it
	// are tracked; their newest certificate's expiry is reported.
	Window Duration `json:"window"`
	// MaxNames caps the names reported (the ones expiring soonest are kept).
	MaxNames int `json:"max_names"`
	// RenewalWindow: a tracked name whose newest certificate has less than this
	// left has stopped renewing.
	RenewalWindow Duration `json:"renewal_window"`
}

// Database selects the storage backend.
type Database struct {
	// Driver is "sqlite" (embedded, default) or "postgres" (URL is then required).
	Driver string `json:"driver"`
	// Path of the SQLite file; relative paths are inside the data directory.
	Path string `json:"path"`
	// URL, when set, selects PostgreSQL: postgres://USER@HOST/DB, or a key=value DSN
	// (host=/run/postgresql for a unix socket). The environment variable
	// NIXPKI_DATABASE_URL and the flag --database-url override it.
	URL string `json:"url,omitempty"`
	// PasswordFile holds the PostgreSQL role's password (first line); relative paths
	// are inside the data directory. Else the URL's passfile or ~/.pgpass apply.
	PasswordFile string `json:"password_file,omitempty"`
}

// DatabaseURLEnv overrides database.url when set.
const DatabaseURLEnv = "NIXPKI_DATABASE_URL"

// Postgres tells whether the settings select PostgreSQL.
func (d Database) Postgres() bool { return d.URL != "" || d.Driver == "postgres" }

func (d Database) validate() error {
	switch d.Driver {
	case "sqlite", "postgres", "":
	default:
		return fmt.Errorf("database.driver %q: use \"sqlite\" (embedded) or \"postgres\" with database.url", d.Driver)
	}
	if d.Postgres() {
		u := d.URL
		if !strings.HasPrefix(u, "postgres://") && !strings.HasPrefix(u, "postgresql://") && !strings.Contains(u, "=") {
			return fmt.Errorf("database.url %q: want postgres://USER@HOST/DATABASE or a key=value DSN such as \"host=/run/postgresql dbname=nixpki\"", redactURL(u))
		}
	}
	return nil
}

// redactURL hides anything after a ':' in the user part, for messages.
func redactURL(u string) string {
	if i, j := strings.Index(u, "://"), strings.LastIndex(u, "@"); i >= 0 && j > i {
		if k := strings.Index(u[i+3:j], ":"); k >= 0 {
			return u[:i+3+k] + ":xxxxx" + u[j:]
		}
	}
	return u
}

// Policy bounds what direct issuance may produce.
type Policy struct {
	DefaultValidity Duration `json:"default_validity"`
	MaxValidity     Duration `json:"max_validity"`
	AllowWildcards  bool     `json:"allow_wildcards"`
	// CRLValidity is how long a CRL is valid (nextUpdate - thisUpdate).
	CRLValidity Duration `json:"crl_validity"`
	// ServerCertValidity is the lifetime of the server's own TLS certificate; it is
	// renewed when two thirds of it has passed.
	ServerCertValidity Duration `json:"server_cert_validity"`
}

// ACME configures the ACME server (provisioners and the validator).
type ACME struct {
	// HTTPPort, TLSPort: where the validator connects for http-01 and tls-alpn-01.
	HTTPPort int `json:"http_port,omitempty"`
	TLSPort  int `json:"tls_port,omitempty"`
	// Resolver HOST:PORT for dns-01 and for resolving names; empty = system.
	Resolver     string            `json:"resolver,omitempty"`
	Provisioners []ACMEProvisioner `json:"provisioners,omitempty"`
}

// ACMEProvisioner is one ACME directory, /acme/<name>/directory.
type ACMEProvisioner struct {
	Name                string   `json:"name"`
	RequireEAB          bool     `json:"require_eab,omitempty"`
	AllowedDNS          []string `json:"allowed_dns,omitempty"`
	DeniedDNS           []string `json:"denied_dns,omitempty"`
	AllowedIP           []string `json:"allowed_ip,omitempty"`
	DeniedIP            []string `json:"denied_ip,omitempty"`
	MaxValidity         Duration `json:"max_validity,omitempty"`
	KeyTypes            []string `json:"key_types,omitempty"`
	OrdersPerMinute     int      `json:"orders_per_minute,omitempty"`
	RequestsPerMinuteIP int      `json:"requests_per_minute_ip,omitempty"`
	MaxBodyBytes        int64    `json:"max_body_bytes,omitempty"`
	NonceLifetime       Duration `json:"nonce_lifetime,omitempty"`
	// Profiles offered to clients (draft-aaron-acme-profiles); empty = the built-in
	// "tlsserver" (90 days, the default) and "shortlived" (7 days).
	Profiles []ACMEProfile `json:"profiles,omitempty"`
	// DefaultProfile is used for orders that name none; empty = the first profile.
	DefaultProfile string `json:"default_profile,omitempty"`
}

// ACMEProfile is one certificate profile an ACME provisioner offers.
type ACMEProfile struct {
	Name        string   `json:"name"`
	Description string   `json:"description,omitempty"`
	Validity    Duration `json:"validity"`
	// ClientAuth adds the clientAuth extended key usage next to serverAuth.
	ClientAuth bool `json:"client_auth,omitempty"`
}

// Nix configures Nix signing certificates (docs/nix-certificates.md).
type Nix struct {
	DefaultValidity Duration `json:"default_validity"`
	MaxValidity     Duration `json:"max_validity"`
	TokenTTL        Duration `json:"token_ttl"`
	// TokenMaxTTL bounds the lifetime an admin may give a token (--ttl).
	TokenMaxTTL Duration `json:"token_max_ttl"`
	// RatePerMinute and RateBurst limit the enrollment endpoints per client address
	// (a token bucket); 0 turns the limit off.
	RatePerMinute int `json:"rate_per_minute"`
	RateBurst     int `json:"rate_burst"`
	// AttemptsMax and AttemptsMaxAge bound the attempt log; 0 = no bound.
	AttemptsMax    int      `json:"attempts_max"`
	AttemptsMaxAge Duration `json:"attempts_max_age"`
	// RenewMaxAge bounds renewal: a certificate is renewed by proof of possession
	// only while its last token or SSH authentication is younger than this.
	RenewMaxAge Duration `json:"renew_max_age"`
	// SSHUserCAs are public keys (authorized_keys format) of trusted SSH user CAs.
	SSHUserCAs    []string          `json:"ssh_user_cas,omitempty"`
	SSHPrincipals []NixSSHPrincipal `json:"ssh_principals,omitempty"`
}

// NixSSHPrincipal maps an SSH certificate principal to a Nix subject and constraints.
type NixSSHPrincipal struct {
	Principal string   `json:"principal"`
	Subject   string   `json:"subject"`
	Targets   []string `json:"targets"`
	// MultiSubject lets the SSH signers of this mapping also enroll for other
	// subjects whose mappings say the same: one person, several signing identities.
	MultiSubject bool   `json:"multi_subject,omitempty"`
	Scope        string `json:"scope,omitempty"` // default "any"
}

// Duration is a time.Duration written as Go duration text ("8760h").
type Duration time.Duration

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("durations are strings like \"8760h\" or \"15m\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("bad duration %q: use Go duration text like \"8760h\" or \"15m\"", s)
	}
	if v < 0 {
		return fmt.Errorf("negative duration %q", s)
	}
	*d = Duration(v)
	return nil
}

// Defaults returns a configuration with every default filled in.
func Defaults() Config {
	return Config{
		Name:       "nixpki",
		KeyType:    "p256",
		DNSNames:   []string{"localhost"},
		Listen:     "127.0.0.1:8443",
		HTTPListen: "127.0.0.1:8080",
		Database:   Database{Driver: "sqlite", Path: "nixpki.db"},
		Policy: Policy{
			DefaultValidity:    Duration(365 * 24 * time.Hour),
			MaxValidity:        Duration(5 * 365 * 24 * time.Hour),
			CRLValidity:        Duration(7 * 24 * time.Hour),
			ServerCertValidity: Duration(30 * 24 * time.Hour),
		},
		ACME: ACME{HTTPPort: 80, TLSPort: 443},
		Nix: Nix{DefaultValidity: Duration(7 * 24 * time.Hour), MaxValidity: Duration(30 * 24 * time.Hour),
			TokenTTL: Duration(15 * time.Minute), TokenMaxTTL: Duration(7 * 24 * time.Hour), RenewMaxAge: Duration(30 * 24 * time.Hour),
			RatePerMinute: 60, RateBurst: 20, AttemptsMax: 100000, AttemptsMaxAge: Duration(90 * 24 * time.Hour)},
		Monitor: Monitor{Window: Duration(180 * 24 * time.Hour), MaxNames: 10000, RenewalWindow: Duration(10 * 24 * time.Hour)},
	}
}

// Parse reads a configuration, rejecting unknown keys by name, and fills defaults for
// anything left out.
func Parse(data []byte) (Config, error) { return ParseOnto(Defaults(), data) }

// ParseOnto reads a configuration over base: keys the data leaves out keep base's
// values. Every structural problem is reported, one per line, each naming its key.
func ParseOnto(base Config, data []byte) (Config, error) {
	c := base
	if err := DecodeStrict(data, &c); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate checks values that JSON types alone don't constrain.
func (c *Config) Validate() error {
	if err := c.Database.validate(); err != nil {
		return err
	}
	if c.Policy.MaxValidity != 0 && c.Policy.DefaultValidity > c.Policy.MaxValidity {
		return fmt.Errorf("policy.default_validity %s exceeds policy.max_validity %s", c.Policy.DefaultValidity.D(), c.Policy.MaxValidity.D())
	}
	if c.Nix.DefaultValidity <= 0 || c.Nix.MaxValidity < c.Nix.DefaultValidity {
		return fmt.Errorf("nix.default_validity %s must be positive and at most nix.max_validity %s", c.Nix.DefaultValidity.D(), c.Nix.MaxValidity.D())
	}
	if c.Nix.TokenTTL <= 0 || c.Nix.TokenMaxTTL < c.Nix.TokenTTL {
		return fmt.Errorf("nix.token_ttl %s must be positive and at most nix.token_max_ttl %s", c.Nix.TokenTTL.D(), c.Nix.TokenMaxTTL.D())
	}
	if err := CheckSecretPath("password_file", c.PasswordFile); err != nil {
		return err
	}
	if c.Monitor.Window <= 0 || c.Monitor.MaxNames <= 0 {
		return fmt.Errorf("monitor.window %s and monitor.max_names %d must be positive", c.Monitor.Window.D(), c.Monitor.MaxNames)
	}
	for _, p := range c.ACME.Provisioners {
		if p.Name == "" || strings.ContainsAny(p.Name, "/?#% ") {
			return fmt.Errorf("acme.provisioners: name %q must be non-empty and URL-safe", p.Name)
		}
	}
	return nil
}

// Load reads D/config.json, or says how to load a directory created from a settings
// file.
func Load(dir string) (Config, error) { return LoadDir(dir, "") }

// Marshal renders the configuration as indented JSON.
func (c *Config) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Resolve returns p made absolute against dir when relative.
func Resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
