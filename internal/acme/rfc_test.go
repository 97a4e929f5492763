package acme

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"nixpki/internal/config"
	"nixpki/internal/testutil"
)

// rawOrder creates an order for names as s; it returns the order, finalize and
// authorization URLs.
func (e *testEnv) rawOrder(s *signer, names ...string) (orderURL, finalize string, authzs []string) {
	e.t.Helper()
	r := e.post(s, e.url("new-order"), map[string]any{"identifiers": ids(names...)})
	if r.status != http.StatusCreated {
		e.t.Fatalf("newOrder: %d %s", r.status, r.body)
	}
	var o struct {
		Authorizations []string
		Finalize       string
	}
	jsonBody(e.t, r.body, &o)
	return r.header.Get("Location"), o.Finalize, o.Authorizations
}

// answerHTTP01 publishes and accepts the http-01 challenge of each authorization.
func (e *testEnv) answerHTTP01(s *signer, authzs []string) {
	e.t.Helper()
	for _, az := range authzs {
		var z struct {
			Challenges []struct{ Type, URL, Token string }
		}
		jsonBody(e.t, e.post(s, az, nil).body, &z)
		for _, c := range z.Challenges {
			if c.Type == http01 {
				e.http01.Store(c.Token, c.Token+"."+thumb(e.t, s))
				e.post(s, c.URL, map[string]any{})
			}
		}
	}
}

// A nonce is spent by the request that first carries it, whatever its outcome
// (RFC 8555 §6.5): a finalize refused with orderNotReady, replayed byte for byte once
// the order is ready, is refused with badNonce and issues nothing.
func TestNonceSpentByRefusedRequest(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	orderURL, fin, authzs := e.rawOrder(a, "replay.test")
	der, _ := csr(t, "replay.test")
	body := a.jws(t, a.header(t, e.nonce(), fin), []byte(`{"csr":"`+b64(der)+`"}`))
	e.do("POST", fin, "application/jose+json", body).wantProblem(t, 403, "orderNotReady")

	e.answerHTTP01(a, authzs)
	waitStatus(t, e, a, orderURL, "ready")
	before := e.rowCounts()
	e.do("POST", fin, "application/jose+json", body).wantProblem(t, 400, "badNonce")
	if after := e.rowCounts(); after != before {
		t.Fatalf("the replayed finalize wrote state:\nbefore %s\nafter  %s", before, after)
	}

	// The same for a refusal in the JWS checks after the signature: a wrong "url".
	n := e.nonce()
	wrong := a.jws(t, a.header(t, n, e.url("new-order")), nil)
	e.do("POST", orderURL, "application/jose+json", wrong).wantProblem(t, 403, "unauthorized")
	e.do("POST", e.url("new-order"), "application/jose+json", wrong).wantProblem(t, 400, "badNonce")

	// A refused newOrder (bad identifier) cannot be replayed either.
	bad := a.jws(t, a.header(t, e.nonce(), e.url("new-order")), []byte(`{"identifiers":[{"type":"email","value":"a@b.test"}]}`))
	e.do("POST", e.url("new-order"), "application/jose+json", bad).wantProblem(t, 400, "unsupportedIdentifier")
	e.do("POST", e.url("new-order"), "application/jose+json", bad).wantProblem(t, 400, "badNonce")
}

// A CSR for the account's own key is refused with badCSR (RFC 8555 §11.1), for every
// key type, and nothing is issued.
func TestCSRWithAccountKeyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withProvisioner(config.ACMEProvisioner{Name: "acme"}))
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	for _, a := range []*signer{{key: newKey(t), alg: "ES256"}, {key: rk, alg: "RS256"}, {key: ek, alg: "EdDSA"}} {
		e.register(a)
		orderURL, fin, authzs := e.rawOrder(a, "self.test")
		e.answerHTTP01(a, authzs)
		waitStatus(t, e, a, orderURL, "ready")
		before := e.rowCounts()
		der, _ := csrWithKey(t, a.key, "self.test")
		r := e.post(a, fin, map[string]any{"csr": b64(der)})
		r.wantProblem(t, 400, "badCSR")
		if !strings.Contains(r.prob.Detail, "account") {
			t.Fatalf("%s: detail %q does not say why", a.alg, r.prob.Detail)
		}
		if after := e.rowCounts(); after != before {
			t.Fatalf("%s: the refused CSR wrote state:\nbefore %s\nafter  %s", a.alg, before, after)
		}
		// A separate key is fine.
		der, _ = csr(t, "self.test")
		if r := e.post(a, fin, map[string]any{"csr": b64(der)}); r.status != 200 {
			t.Fatalf("%s: finalize with a separate key: %d %s", a.alg, r.status, r.body)
		}
	}
}

// Resource URLs use the host the client used when it is one of the CA's names or
// addresses on the server's port; any other Host gets the configured base, never a
// reflection of itself. The JWS "url" and "kid" checks follow.
func TestURLsFollowTheClientsHost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *config.Config, o *Options) {
		o.BaseURL = strings.Replace(o.BaseURL, "127.0.0.1", "localhost", 1) // as `serve` configures it
	})
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.base, "http://"))
	configured := "http://localhost:" + port
	dir := func(host string) map[string]any {
		req, _ := http.NewRequest("GET", e.dirURL("acme"), nil)
		req.Host = host
		res, err := e.hs.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var d map[string]any
		if err := json.NewDecoder(res.Body).Decode(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	for host, want := range map[string]string{
		"127.0.0.1:" + port:          "http://127.0.0.1:" + port,
		"LocalHost:" + port:          configured,
		"evil.example:" + port:       configured,
		"127.0.0.1:1":                configured,
		"[::ffff:127.0.0.1]:" + port: "http://127.0.0.1:" + port,
	} {
		if got := dir(host)["newOrder"]; got != want+"/acme/acme/new-order" {
			t.Errorf("Host %s: newOrder %v, want base %s", host, got, want)
		}
	}

	// A client of the CA by IP completes an order with the URLs it was given.
	cl := &xacme.Client{Key: newKey(t), DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	acct, err := cl.Register(context.Background(), &xacme.Account{}, xacme.AcceptTOS)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(acct.URI, e.base+"/") {
		t.Fatalf("account URL %s is not under %s", acct.URI, e.base)
	}
	chain, o := e.issue(cl, http01, "host.test")
	if len(chain) == 0 || !strings.HasPrefix(o.URI, e.base+"/") || !strings.HasPrefix(o.FinalizeURL, e.base+"/") {
		t.Fatalf("order %s, finalize %s: not under %s", o.URI, o.FinalizeURL, e.base)
	}

	// The same account signs by its URL under the other name too; a JWS "url" naming
	// another host than the one requested is refused.
	s := &signer{key: newKey(t), alg: "ES256"}
	e.register(s)
	s.kid = strings.Replace(s.kid, e.base, configured, 1)
	if r := e.post(s, e.url("new-order"), map[string]any{"identifiers": ids("kid.test")}); r.status != 201 {
		t.Fatalf("kid under the configured name: %d %s", r.status, r.body)
	}
	body := s.jws(t, s.header(t, e.nonce(), configured+"/acme/acme/new-order"), []byte(`{"identifiers":[{"type":"dns","value":"kid.test"}]}`))
	e.do("POST", e.url("new-order"), "application/jose+json", body).wantProblem(t, 403, "unauthorized")
}

// A CSR asking for OCSP must-staple (RFC 7633 TLS feature status_request) gets it in
// the certificate, as openssl reads it; other TLS features are refused with badCSR.
func TestMustStaple(t *testing.T) {
	t.Parallel()
	bin := testutil.NeedTool(t, "openssl")
	e := newEnv(t)
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	orderURL, fin, authzs := e.rawOrder(a, "staple.test")
	e.answerHTTP01(a, authzs)
	waitStatus(t, e, a, orderURL, "ready")
	featureCSR := func(features ...int) []byte {
		v, _ := asn1.Marshal(features)
		tmpl := &x509.CertificateRequest{DNSNames: []string{"staple.test"},
			ExtraExtensions: []pkix.Extension{{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}, Value: v}}}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, newKey(t))
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	e.post(a, fin, map[string]any{"csr": b64(featureCSR(5, 99))}).wantProblem(t, 400, "badCSR")
	r := e.post(a, fin, map[string]any{"csr": b64(featureCSR(5))})
	var done struct{ Status, Certificate string }
	jsonBody(t, r.body, &done)
	if r.status != 200 || done.Status != "valid" {
		t.Fatalf("finalize: %d %s", r.status, r.body)
	}
	pemFile := filepath.Join(t.TempDir(), "leaf.pem")
	if err := os.WriteFile(pemFile, e.post(a, done.Certificate, nil).body, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "x509", "-in", pemFile, "-noout", "-text").CombinedOutput()
	if err != nil || !regexp.MustCompile(`TLS Feature:\s*\n\s*status_request\b`).Match(out) {
		t.Fatalf("openssl x509 -text: %v\n%s", err, out)
	}
}

// An order's notBefore and notAfter are in the certificate exactly, or the order is
// refused with a problem saying which policy they break (RFC 8555 §7.4): never
// accepted and then ignored.
func TestOrderValidityWindow(t *testing.T) {
	t.Parallel()
	var skew atomic.Int64 // added to the ACME server's clock
	e := newEnv(t, func(_ *config.Config, o *Options) {
		o.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	})
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	now := time.Now().UTC().Truncate(time.Second)
	ts := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	order := func(window map[string]any) *rawResponse {
		window["identifiers"] = ids("window.test")
		return e.post(a, e.url("new-order"), window)
	}
	issue := func(window map[string]any) *x509.Certificate {
		t.Helper()
		r := order(window)
		if r.status != 201 {
			t.Fatalf("newOrder %v: %d %s", window, r.status, r.body)
		}
		var o struct {
			Authorizations      []string
			Finalize, NotBefore string
		}
		jsonBody(t, r.body, &o)
		e.answerHTTP01(a, o.Authorizations)
		waitStatus(t, e, a, r.header.Get("Location"), "ready")
		der, _ := csr(t, "window.test")
		f := e.post(a, o.Finalize, map[string]any{"csr": b64(der)})
		var done struct{ Certificate string }
		jsonBody(t, f.body, &done)
		if f.status != 200 {
			t.Fatalf("finalize %v: %d %s", window, f.status, f.body)
		}
		leaf, _ := decodePEMChain(t, e.post(a, done.Certificate, nil).body)
		c, err := x509.ParseCertificate(leaf)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	day := 24 * time.Hour
	c := issue(map[string]any{"notBefore": ts(time.Hour), "notAfter": ts(time.Hour + 2*day)})
	if !c.NotBefore.Equal(now.Add(time.Hour)) || !c.NotAfter.Equal(now.Add(time.Hour+2*day)) {
		t.Fatalf("both asked: certificate valid %s to %s", c.NotBefore, c.NotAfter)
	}
	c = issue(map[string]any{"notAfter": ts(2 * time.Hour)})
	if !c.NotAfter.Equal(now.Add(2*time.Hour)) || c.NotBefore.After(time.Now()) {
		t.Fatalf("notAfter asked: certificate valid %s to %s", c.NotBefore, c.NotAfter)
	}
	c = issue(map[string]any{"notBefore": ts(10 * time.Minute)})
	if !c.NotBefore.Equal(now.Add(10*time.Minute)) || !c.NotAfter.Equal(now.Add(10*time.Minute+90*day)) {
		t.Fatalf("notBefore asked: certificate valid %s to %s (want 90 days from notBefore)", c.NotBefore, c.NotAfter)
	}

	before := e.rowCounts()
	for _, tc := range []struct {
		window map[string]any
		says   string
	}{
		{map[string]any{"notBefore": ts(-time.Hour)}, "in the past"},
		{map[string]any{"notAfter": ts(91 * day)}, "lifetime"},
		{map[string]any{"notBefore": ts(day), "notAfter": ts(92 * day)}, "lifetime"},
		{map[string]any{"notBefore": ts(day), "notAfter": ts(time.Hour)}, "after notBefore"},
		{map[string]any{"notAfter": ts(-time.Minute)}, "future"},
		{map[string]any{"notBefore": ts(20 * 365 * day)}, "expiry"},
	} {
		r := order(tc.window)
		r.wantProblem(t, 400, "malformed")
		if !strings.Contains(r.prob.Detail, tc.says) {
			t.Errorf("%v: detail %q does not say %q", tc.window, r.prob.Detail, tc.says)
		}
	}
	if after := e.rowCounts(); after != before {
		t.Fatalf("refused windows wrote state:\nbefore %s\nafter  %s", before, after)
	}

	// A notBefore that has passed by the time of finalization is refused there, and
	// nothing is issued.
	r := order(map[string]any{"notBefore": ts(0)})
	var o struct {
		Authorizations []string
		Finalize       string
	}
	jsonBody(t, r.body, &o)
	e.answerHTTP01(a, o.Authorizations)
	waitStatus(t, e, a, r.header.Get("Location"), "ready")
	skew.Store(int64(time.Hour))
	before = e.rowCounts()
	der, _ := csr(t, "window.test")
	e.post(a, o.Finalize, map[string]any{"csr": b64(der)}).wantProblem(t, 400, "malformed")
	if after := e.rowCounts(); after != before {
		t.Fatalf("a refused finalization wrote state:\nbefore %s\nafter  %s", before, after)
	}
}

// hang, published as an http-01 answer, makes the test responder never answer.
const hang = "\x00hang"

// Problem details say what is wrong in the protocol's terms: no Go type names or ASN.1
// internals, a key's real size, DNS when DNS failed.
func TestProblemDetailsReadable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withProvisioner(config.ACMEProvisioner{Name: "acme", KeyTypes: []string{"p256", "rsa"}}))
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	internals := regexp.MustCompile(`Go |struct|store\.|\[\]|asn1|x509:|go-jose|\*[a-z]+\.`)
	readable := func(r *rawResponse, status int, typ string, says ...string) {
		t.Helper()
		r.wantProblem(t, status, typ)
		if internals.MatchString(r.prob.Detail) {
			t.Errorf("detail %q shows implementation internals", r.prob.Detail)
		}
		for _, s := range says {
			if !strings.Contains(r.prob.Detail, s) {
				t.Errorf("detail %q does not say %q", r.prob.Detail, s)
			}
		}
	}
	readable(e.post(a, e.url("new-order"), map[string]any{"identifiers": "x.test"}), 400, "malformed", `"identifiers"`, "a list")
	readable(e.post(a, e.url("new-order"), map[string]any{"identifiers": []any{map[string]any{"type": 1}}}), 400, "malformed", `"identifiers.type"`, "a string")
	readable(e.post(a, e.url("new-order"), []byte(`{"identifiers": [`)), 400, "malformed", "not valid JSON")
	readable(e.do("POST", e.url("new-order"), "application/jose+json", []byte(`{"protected": 5}`)), 400, "malformed", `"protected"`, "a string")
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	readable(e.post(&signer{key: small, alg: "RS256"}, e.url("new-account"), map[string]any{"termsOfServiceAgreed": true}), 400, "badPublicKey", "RSA 1024-bit")

	orderURL, fin, authzs := e.rawOrder(a, "words.test")
	e.answerHTTP01(a, authzs)
	waitStatus(t, e, a, orderURL, "ready")
	readable(e.post(a, fin, map[string]any{"csr": b64([]byte("not a CSR"))}), 400, "badCSR", "DER")
	rsaCSR, _ := csrWithKey(t, small, "words.test")
	readable(e.post(a, fin, map[string]any{"csr": b64(rsaCSR)}), 400, "badCSR", "RSA 1024-bit")
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384CSR, _ := csrWithKey(t, p384, "words.test")
	readable(e.post(a, fin, map[string]any{"csr": b64(p384CSR)}), 400, "badCSR", "ECDSA P-384", "p256, rsa")

	// An http-01 validation of a name that does not resolve says DNS.
	orderURL, _, authzs = e.rawOrder(a, "gone.nxdomain.test")
	e.answerHTTP01(a, authzs)
	waitStatus(t, e, a, orderURL, "invalid")
	var z struct {
		Challenges []struct {
			Error struct{ Type, Detail string }
		}
	}
	jsonBody(t, e.post(a, authzs[0], nil).body, &z)
	if err := z.Challenges[0].Error; err.Type != errDNS || !strings.Contains(err.Detail, "DNS") || !strings.Contains(err.Detail, "gone.nxdomain.test") {
		t.Fatalf("validation of an unresolvable name: %+v", err)
	}
}

// A validation whose web server never answers leaves its real error on the
// authorization before a client polling for 30 s (certbot) gives up, with the
// default attempts and retry delays.
func TestValidationWithinClientWindow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *config.Config, o *Options) { o.ValidationAttempts, o.RetryDelay = 0, 0 })
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	orderURL, _, authzs := e.rawOrder(a, "slow.test")
	var z struct {
		Challenges []struct{ Type, URL, Token string }
	}
	jsonBody(t, e.post(a, authzs[0], nil).body, &z)
	start := time.Now()
	for _, c := range z.Challenges {
		if c.Type == http01 {
			e.http01.Store(c.Token, hang)
			e.post(a, c.URL, map[string]any{})
		}
	}
	for time.Since(start) < 30*time.Second {
		var az struct {
			Status     string
			Challenges []struct {
				Error struct{ Type, Detail string }
			}
		}
		jsonBody(t, e.post(a, authzs[0], nil).body, &az)
		if az.Status == "invalid" {
			if err := az.Challenges[0].Error; err.Type != errConnection || !strings.Contains(err.Detail, "no answer within") {
				t.Fatalf("error on the authorization: %+v", err)
			}
			waitStatus(t, e, a, orderURL, "invalid")
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatal("the authorization was still not invalid 30 s after the challenge was accepted")
}
