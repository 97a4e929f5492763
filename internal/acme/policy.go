package acme

import (
	"crypto"
	"crypto/rand"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/problem"
	"nixpki/internal/store"
)

// DefaultProvisioner is the provisioner that exists when the configuration names none:
// https://HOST/acme/acme/directory, the layout step-ca users know.
const DefaultProvisioner = "acme"

// Defaults of a provisioner's limits.
const (
	defaultMaxBody       = 64 << 10
	defaultNonceLifetime = time.Hour
	orderLifetime        = 24 * time.Hour
	maxIdentifiers       = 100
)

// Built-in profiles: 90 days (NixOS renews when fewer than 30 days remain) and 7 days.
var builtinProfiles = []config.ACMEProfile{
	{Name: "tlsserver", Description: "TLS server certificate, 90 days", Validity: config.Duration(90 * 24 * time.Hour)},
	{Name: "shortlived", Description: "Short-lived TLS server certificate, 7 days", Validity: config.Duration(7 * 24 * time.Hour)},
}

// provisioner is one ACME directory with its compiled policy.
type provisioner struct {
	name            string
	requireEAB      bool
	allowedDNS      []string
	deniedDNS       []string
	allowedIP       []netip.Prefix
	deniedIP        []netip.Prefix
	allowWildcards  bool
	maxValidity     time.Duration
	keyTypes        map[keys.Type]bool // nil = every type nixpki certifies
	ordersPerMinute int
	ipLimit         *ipLimiter
	maxBody         int64
	nonceLife       time.Duration
	profiles        map[string]config.ACMEProfile
	defaultProfile  string
}

// compileProvisioners checks the ACME configuration and returns the provisioners by
// name (the default one when none is configured) and the longest nonce lifetime.
func compileProvisioners(cfg config.ACME, pol config.Policy) (map[string]*provisioner, time.Duration, error) {
	list := cfg.Provisioners
	if len(list) == 0 {
		list = []config.ACMEProvisioner{{Name: DefaultProvisioner}}
	}
	out := map[string]*provisioner{}
	var maxLife time.Duration
	for _, c := range list {
		p, err := compileProvisioner(c, pol)
		if err != nil {
			return nil, 0, fmt.Errorf("acme provisioner %q: %w", c.Name, err)
		}
		if out[p.name] != nil {
			return nil, 0, fmt.Errorf("acme provisioner %q is configured twice", p.name)
		}
		out[p.name] = p
		maxLife = max(maxLife, p.nonceLife)
	}
	return out, maxLife, nil
}

func compileProvisioner(c config.ACMEProvisioner, pol config.Policy) (*provisioner, error) {
	p := &provisioner{
		name: c.Name, requireEAB: c.RequireEAB, allowWildcards: pol.AllowWildcards,
		ordersPerMinute: c.OrdersPerMinute, ipLimit: &ipLimiter{limit: c.RequestsPerMinuteIP},
		maxBody: c.MaxBodyBytes, nonceLife: c.NonceLifetime.D(), maxValidity: c.MaxValidity.D(),
		profiles: map[string]config.ACMEProfile{},
	}
	if p.name == "" || strings.ContainsAny(p.name, "/?#% ") {
		return nil, fmt.Errorf("the name must be non-empty and URL-safe")
	}
	if p.maxBody <= 0 {
		p.maxBody = defaultMaxBody
	}
	if p.nonceLife <= 0 {
		p.nonceLife = defaultNonceLifetime
	}
	if m := pol.MaxValidity.D(); p.maxValidity <= 0 || (m > 0 && p.maxValidity > m) {
		p.maxValidity = m
	}
	for _, d := range c.AllowedDNS {
		p.allowedDNS = append(p.allowedDNS, strings.ToLower(strings.TrimSpace(d)))
	}
	for _, d := range c.DeniedDNS {
		p.deniedDNS = append(p.deniedDNS, strings.ToLower(strings.TrimSpace(d)))
	}
	var err error
	if p.allowedIP, err = parsePrefixes(c.AllowedIP); err != nil {
		return nil, fmt.Errorf("allowed_ip: %w", err)
	}
	if p.deniedIP, err = parsePrefixes(c.DeniedIP); err != nil {
		return nil, fmt.Errorf("denied_ip: %w", err)
	}
	for _, kt := range c.KeyTypes {
		t, err := parseKeyType(kt)
		if err != nil {
			return nil, err
		}
		if p.keyTypes == nil {
			p.keyTypes = map[keys.Type]bool{}
		}
		p.keyTypes[t] = true
	}
	profiles := c.Profiles
	if len(profiles) == 0 {
		profiles = builtinProfiles
	}
	for _, pr := range profiles {
		if pr.Name == "" || pr.Validity <= 0 {
			return nil, fmt.Errorf("profile %q needs a name and a positive validity", pr.Name)
		}
		p.profiles[pr.Name] = pr
	}
	p.defaultProfile = c.DefaultProfile
	if p.defaultProfile == "" {
		p.defaultProfile = profiles[0].Name
	}
	if _, ok := p.profiles[p.defaultProfile]; !ok {
		return nil, fmt.Errorf("default_profile %q is not one of its profiles", p.defaultProfile)
	}
	return p, nil
}

func parsePrefixes(ss []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range ss {
		pf, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR range like 100.64.0.0/10", s)
		}
		out = append(out, pf.Masked())
	}
	return out, nil
}

// parseKeyType reads a key_types entry: rsa (any RSA of at least 2048 bits), p256,
// p384, ed25519.
func parseKeyType(s string) (keys.Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "rsa", "rsa2048", "rsa3072", "rsa4096":
		return keys.RSA3072, nil
	case "p256", "ec256", "ecdsa-p256":
		return keys.P256, nil
	case "p384", "ec384", "ecdsa-p384":
		return keys.P384, nil
	case "ed25519":
		return keys.Ed25519, nil
	}
	return "", fmt.Errorf("key_types: unknown key type %q: use rsa, p256, p384 or ed25519", s)
}

// lifetime is a profile's certificate lifetime, capped by the provisioner's maximum.
func (p *provisioner) lifetime(profile string) time.Duration {
	life := p.profiles[profile].Validity.D()
	if p.maxValidity > 0 {
		life = min(life, p.maxValidity)
	}
	return life
}

// checkCSRKey applies the provisioner's accepted key types to a CSR's key.
func (p *provisioner) checkCSRKey(pub crypto.PublicKey) error {
	if ca.CheckLeafKey(pub) != nil {
		return acmeErr(http.StatusBadRequest, errBadCSR, "the CSR's key is %s: use RSA of at least 2048 bits, ECDSA P-256 or P-384, or Ed25519", keys.Describe(pub))
	}
	if p.keyTypes != nil && !p.keyTypes[keys.TypeOf(pub)] {
		var names []string
		for t := range p.keyTypes {
			if t == keys.RSA3072 {
				t = "rsa" // any RSA of at least 2048 bits, as configured
			}
			names = append(names, string(t))
		}
		sort.Strings(names)
		return acmeErr(http.StatusBadRequest, errBadCSR, "provisioner %q does not accept %s keys (accepted: %s)", p.name, keys.Describe(pub), strings.Join(names, ", "))
	}
	return nil
}

// normalizeIdentifier validates an order identifier and applies the provisioner's
// policy. A "dns" identifier holding an IP address (as lego 4.9 sends them) is an IP
// identifier. It returns the normalized identifier and whether it is a wildcard.
func (p *provisioner) normalizeIdentifier(id store.ACMEIdentifier) (store.ACMEIdentifier, bool, *problem.Subproblem) {
	sub := func(typ, format string, args ...any) *problem.Subproblem {
		return &problem.Subproblem{Type: typ, Detail: fmt.Sprintf(format, args...), Identifier: id}
	}
	v := strings.TrimSpace(id.Value)
	switch id.Type {
	case "dns", "ip":
	default:
		return id, false, sub(errUnsupportedIdentifier, "identifier type %q is not supported: use dns or ip", id.Type)
	}
	if addr, err := netip.ParseAddr(v); err == nil {
		if addr.Zone() != "" {
			return id, false, sub(errRejectedIdentifier, "IP address %q has a zone", v)
		}
		addr = addr.Unmap()
		for _, pf := range p.deniedIP {
			if pf.Contains(addr) {
				return id, false, sub(errRejectedIdentifier, "%s is in denied range %s", addr, pf)
			}
		}
		if len(p.allowedIP) > 0 && !containsAddr(p.allowedIP, addr) {
			return id, false, sub(errRejectedIdentifier, "%s is outside the allowed IP ranges of provisioner %q", addr, p.name)
		}
		return store.ACMEIdentifier{Type: "ip", Value: addr.String()}, false, nil
	}
	if id.Type == "ip" {
		return id, false, sub(errMalformed, "%q is not an IP address", v)
	}
	sans, err := ca.ParseSANs([]string{v}, p.allowWildcards)
	if err != nil || len(sans.DNS) != 1 || strings.Contains(v, "[") {
		return id, false, sub(errRejectedIdentifier, "%q is not an acceptable DNS name: %v", v, err)
	}
	name := sans.DNS[0]
	for _, d := range p.deniedDNS {
		if dnsSuffixMatch(name, d) {
			return id, false, sub(errRejectedIdentifier, "%s is denied by provisioner %q (%s)", name, p.name, d)
		}
	}
	if len(p.allowedDNS) > 0 && !anySuffix(name, p.allowedDNS) {
		return id, false, sub(errRejectedIdentifier, "%s is outside the DNS suffixes provisioner %q allows (%s)", name, p.name, strings.Join(p.allowedDNS, ", "))
	}
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return store.ACMEIdentifier{Type: "dns", Value: base}, true, nil
	}
	return store.ACMEIdentifier{Type: "dns", Value: name}, false, nil
}

func containsAddr(pfs []netip.Prefix, a netip.Addr) bool {
	for _, pf := range pfs {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

func anySuffix(name string, suffixes []string) bool {
	for _, s := range suffixes {
		if dnsSuffixMatch(name, s) {
			return true
		}
	}
	return false
}

// dnsSuffixMatch follows RFC 5280 name constraints: "internal" matches itself and every
// name under it, ".internal" only names under it.
func dnsSuffixMatch(name, suffix string) bool {
	name = strings.TrimPrefix(name, "*.")
	if strings.HasPrefix(suffix, ".") {
		return strings.HasSuffix(name, suffix)
	}
	return name == suffix || strings.HasSuffix(name, "."+suffix)
}

// ipLimiter counts requests per client IP in fixed one-minute windows (per server).
type ipLimiter struct {
	limit  int
	mu     sync.Mutex
	window int64
	counts map[string]int
}

func (l *ipLimiter) allow(ip string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	w := now.Unix() / 60
	l.mu.Lock()
	defer l.mu.Unlock()
	if w != l.window || l.counts == nil {
		l.window, l.counts = w, map[string]int{}
	}
	l.counts[ip]++
	if l.counts[ip] > l.limit {
		e := acmeErr(http.StatusTooManyRequests, errRateLimited, "more than %d requests a minute from %s", l.limit, ip)
		e.Headers = http.Header{}
		retryAfter(e.Headers, time.Unix((w+1)*60, 0).Sub(now))
		return e
	}
	return nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func randomBytes32() ([]byte, error) {
	b := make([]byte, 32)
	_, err := rand.Read(b)
	return b, err
}
