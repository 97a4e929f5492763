package acme

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"nixpki/internal/problem"
	"nixpki/internal/store"
)

// validator checks http-01, dns-01 and tls-alpn-01 challenges. Ports and the resolver
// are configurable so that tests run unprivileged on loopback; names are resolved
// through the configured resolver too.
type validator struct {
	httpPort, tlsPort int
	resolver          *net.Resolver
	attempts          int
	delay             time.Duration
	sem               chan struct{}
	client            *http.Client
}

const (
	// validationBudget bounds a validation with all its attempts, so that its real
	// outcome is on the authorization before clients stop polling (certbot waits
	// about 30 s); validationTimeout bounds one attempt.
	validationBudget    = 25 * time.Second
	validationTimeout   = 10 * time.Second
	maxConcurrentChecks = 64
	staleValidation     = 2 * time.Minute
	recoverInterval     = 30 * time.Second
	alpnProto           = "acme-tls/1"
)

// oidACMEIdentifier is id-pe-acmeIdentifier (RFC 8737 §6.1).
var oidACMEIdentifier = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 31}

func newValidator(opts Options) *validator {
	v := &validator{
		httpPort: opts.Config.HTTPPort, tlsPort: opts.Config.TLSPort,
		attempts: opts.ValidationAttempts, delay: opts.RetryDelay,
		sem:      make(chan struct{}, maxConcurrentChecks),
		resolver: net.DefaultResolver,
	}
	if v.httpPort == 0 {
		v.httpPort = 80
	}
	if v.tlsPort == 0 {
		v.tlsPort = 443
	}
	if v.attempts <= 0 {
		v.attempts = 3
	}
	if v.delay <= 0 {
		v.delay = time.Second
	}
	if addr := opts.Config.Resolver; addr != "" {
		v.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	allowed := map[string]bool{strconv.Itoa(v.httpPort): true, strconv.Itoa(v.tlsPort): true}
	v.client = &http.Client{
		Timeout: validationTimeout,
		Transport: &http.Transport{
			DialContext:       v.dial,
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // redirects to https: the content is what counts
		},
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("too many redirects")
			}
			port := r.URL.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[r.URL.Scheme]
			}
			if !allowed[port] || (r.URL.Scheme != "http" && r.URL.Scheme != "https") {
				return fmt.Errorf("redirect to %s: only the validation ports are followed", r.URL.Redacted())
			}
			return nil
		},
	}
	return v
}

// dial connects to host:port, resolving names with the validator's resolver.
func (v *validator) dial(ctx context.Context, network, hostport string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil, err
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = v.resolver.LookupNetIP(ctx, "ip", host); err != nil {
		return nil, err
	}
	var d net.Dialer
	var firstErr error
	for _, a := range addrs {
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.Unmap().String(), port))
		if err == nil {
			return c, nil
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	if firstErr == nil {
		firstErr = fmt.Errorf("%s has no addresses", host)
	}
	return nil, firstErr
}

// startValidation validates an authorization's chosen challenge in the background
// and records the outcome (and the order's) in one transaction.
func (s *Server) startValidation(a *store.ACMEAuthz, thumbprint string) {
	if s.ctx.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		select {
		case s.val.sem <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		defer func() { <-s.val.sem }()
		p := s.val.run(s.ctx, a, a.Token+"."+thumbprint)
		if s.ctx.Err() != nil {
			return // stopping: another server (or this one, restarted) takes it over
		}
		var pj []byte
		if p != nil {
			pj = problemJSON(p)
			s.log.Info("acme validation failed", "authz", a.ID, "identifier", a.Identifier.Value, "challenge", a.ChallType, "problem", p.Detail)
		}
		if err := s.db.FinishACMEChallenge(context.Background(), a.ID, pj, s.now()); err != nil {
			s.log.Error("acme: recording a validation", "authz", a.ID, "err", err)
		} else if p == nil {
			s.log.Info("acme challenge valid", "authz", a.ID, "identifier", a.Identifier.Value, "challenge", a.ChallType)
		}
	}()
}

// recoverValidations takes over validations whose server stopped midway.
func (s *Server) recoverValidations() {
	defer s.wg.Done()
	t := time.NewTicker(recoverInterval)
	defer t.Stop()
	for {
		stale, err := s.db.StaleACMEChallenges(s.ctx, s.now().Add(-staleValidation), 100)
		if err != nil && s.ctx.Err() == nil {
			s.log.Error("acme: listing stale validations", "err", err)
		}
		for _, a := range stale {
			won, err := s.db.ClaimACMEChallenge(s.ctx, a.ID, a.StartedAt, s.now())
			if err != nil || !won {
				continue
			}
			acct, err := s.db.GetACMEAccount(s.ctx, a.AccountID)
			if err != nil {
				continue
			}
			s.startValidation(a, acct.Thumbprint)
		}
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// run tries a validation up to v.attempts times, waiting v.delay (doubling) between,
// within validationBudget: no retry starts that could not get a full attempt's time.
func (v *validator) run(ctx context.Context, a *store.ACMEAuthz, keyAuth string) *problem.Problem {
	end := time.Now().Add(validationBudget)
	delay := v.delay
	for i := 1; ; i++ {
		p := v.once(ctx, a, keyAuth, min(validationTimeout, time.Until(end)))
		if p == nil || i >= v.attempts || time.Until(end) < delay+validationTimeout {
			return p
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return p
		}
		delay *= 2
	}
}

func (v *validator) once(ctx context.Context, a *store.ACMEAuthz, keyAuth string, limit time.Duration) *problem.Problem {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	ctx = context.WithValue(ctx, limitKey{}, limit)
	switch a.ChallType {
	case http01:
		return v.http01(ctx, a.Identifier, a.Token, keyAuth)
	case dns01:
		return v.dns01(ctx, a.Identifier.Value, keyAuth)
	case tlsALPN01:
		return v.tlsALPN01(ctx, a.Identifier, keyAuth)
	}
	return acmeErr(http.StatusInternalServerError, errServerInternal, "unknown challenge type %q", a.ChallType)
}

func (v *validator) http01(ctx context.Context, id store.ACMEIdentifier, token, keyAuth string) *problem.Problem {
	host := id.Value
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if v.httpPort != 80 {
		host += ":" + strconv.Itoa(v.httpPort)
	}
	url := "http://" + host + "/.well-known/acme-challenge/" + token
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return acmeErr(http.StatusBadRequest, errMalformed, "http-01: %v", err)
	}
	res, err := v.client.Do(req)
	if err != nil {
		return netProblem(ctx, "http-01: fetching "+url, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, 8<<10))
	if err != nil {
		return netProblem(ctx, "http-01: reading "+url, err)
	}
	if res.StatusCode != http.StatusOK {
		return acmeErr(http.StatusForbidden, errUnauthorized, "http-01: %s answered %s", url, res.Status)
	}
	if got := strings.TrimSpace(string(body)); subtle.ConstantTimeCompare([]byte(got), []byte(keyAuth)) != 1 {
		return acmeErr(http.StatusForbidden, errIncorrectResponse, "http-01: %s answered %.80q, not the key authorization", url, got)
	}
	return nil
}

// limitKey carries an attempt's time limit, for problem details.
type limitKey struct{}

func limitOf(ctx context.Context) time.Duration {
	d, _ := ctx.Value(limitKey{}).(time.Duration)
	return d.Round(time.Second)
}

// netProblem is a network step's failure: dns when a name did not resolve, else
// connection, with what happened in words.
func netProblem(ctx context.Context, step string, err error) *problem.Problem {
	d, isDNS := netDetail(ctx, err, limitOf(ctx))
	if isDNS {
		return acmeErr(http.StatusBadRequest, errDNS, "%s: %s", step, d)
	}
	return acmeErr(http.StatusBadRequest, errConnection, "%s: %s", step, d)
}

func keyAuthDigest(keyAuth string) []byte {
	h := sha256.Sum256([]byte(keyAuth))
	return h[:]
}

func (v *validator) dns01(ctx context.Context, domain, keyAuth string) *problem.Problem {
	name := "_acme-challenge." + domain + "."
	txts, err := v.resolver.LookupTXT(ctx, name)
	if err != nil {
		d, _ := netDetail(ctx, err, limitOf(ctx))
		return acmeErr(http.StatusBadRequest, errDNS, "dns-01: looking up TXT %s: %s", name, d)
	}
	want := encodeB64(keyAuthDigest(keyAuth))
	for _, t := range txts {
		if subtle.ConstantTimeCompare([]byte(strings.TrimSpace(t)), []byte(want)) == 1 {
			return nil
		}
	}
	return acmeErr(http.StatusForbidden, errIncorrectResponse, "dns-01: no TXT record at %s holds the key authorization digest (found %d records)", name, len(txts))
}

func (v *validator) tlsALPN01(ctx context.Context, id store.ACMEIdentifier, keyAuth string) *problem.Problem {
	sni := id.Value
	if id.Type == "ip" {
		sni = reverseName(id.Value)
	}
	addr := net.JoinHostPort(id.Value, strconv.Itoa(v.tlsPort))
	raw, err := v.dial(ctx, "tcp", addr)
	if err != nil {
		return netProblem(ctx, "tls-alpn-01: connecting to "+addr, err)
	}
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{ServerName: sni, NextProtos: []string{alpnProto}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12})
	if err := conn.HandshakeContext(ctx); err != nil {
		if ctx.Err() != nil {
			return netProblem(ctx, "tls-alpn-01: handshake with "+addr, err)
		}
		return acmeErr(http.StatusBadRequest, errTLS, "tls-alpn-01: handshake with %s: %v", addr, err)
	}
	st := conn.ConnectionState()
	if st.NegotiatedProtocol != alpnProto {
		return acmeErr(http.StatusForbidden, errTLS, "tls-alpn-01: %s did not negotiate %s", addr, alpnProto)
	}
	if len(st.PeerCertificates) == 0 {
		return acmeErr(http.StatusForbidden, errTLS, "tls-alpn-01: %s sent no certificate", addr)
	}
	return checkALPNCert(st.PeerCertificates[0], id, keyAuth)
}

// checkALPNCert checks the self-signed challenge certificate (RFC 8737 §3): the one
// identifier as its only SAN and the critical acmeIdentifier extension with the key
// authorization's digest. For an IP, a dNSName holding the address is accepted too
// (older clients).
func checkALPNCert(c *x509.Certificate, id store.ACMEIdentifier, keyAuth string) *problem.Problem {
	sanOK := false
	if id.Type == "ip" {
		ip := net.ParseIP(id.Value)
		sanOK = len(c.IPAddresses) == 1 && c.IPAddresses[0].Equal(ip) && len(c.DNSNames) == 0 ||
			len(c.DNSNames) == 1 && c.DNSNames[0] == id.Value && len(c.IPAddresses) == 0
	} else {
		sanOK = len(c.DNSNames) == 1 && strings.EqualFold(c.DNSNames[0], id.Value) && len(c.IPAddresses) == 0
	}
	if !sanOK {
		var ips []string
		for _, ip := range c.IPAddresses {
			ips = append(ips, ip.String())
		}
		return acmeErr(http.StatusForbidden, errUnauthorized, "tls-alpn-01: the certificate must name exactly %s (it names %s)", id.Value, strings.Join(append(slices.Clone(c.DNSNames), ips...), ", "))
	}
	for _, ext := range c.Extensions {
		if !ext.Id.Equal(oidACMEIdentifier) {
			continue
		}
		if !ext.Critical {
			return acmeErr(http.StatusForbidden, errUnauthorized, "tls-alpn-01: the acmeIdentifier extension must be critical")
		}
		var digest []byte
		if rest, err := asn1.Unmarshal(ext.Value, &digest); err != nil || len(rest) > 0 {
			return acmeErr(http.StatusForbidden, errUnauthorized, "tls-alpn-01: the acmeIdentifier extension is not an OCTET STRING")
		}
		if subtle.ConstantTimeCompare(digest, keyAuthDigest(keyAuth)) != 1 {
			return acmeErr(http.StatusForbidden, errIncorrectResponse, "tls-alpn-01: the acmeIdentifier digest does not match the key authorization")
		}
		return nil
	}
	return acmeErr(http.StatusForbidden, errUnauthorized, "tls-alpn-01: the certificate has no acmeIdentifier extension")
}

// reverseName is the in-addr.arpa or ip6.arpa name of an IP address (RFC 8738 §6).
func reverseName(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	b := a.Unmap().AsSlice()
	var parts []string
	if len(b) == 4 {
		for i := 3; i >= 0; i-- {
			parts = append(parts, strconv.Itoa(int(b[i])))
		}
		return strings.Join(parts, ".") + ".in-addr.arpa"
	}
	const hex = "0123456789abcdef"
	for i := len(b) - 1; i >= 0; i-- {
		parts = append(parts, string(hex[b[i]&0xf]), string(hex[b[i]>>4]))
	}
	return strings.Join(parts, ".") + ".ip6.arpa"
}
