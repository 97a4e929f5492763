package acme

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	xacme "golang.org/x/crypto/acme"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/x509util"
)

// testEnv is a CA in a temporary directory with its ACME server on loopback, an
// http-01 and a tls-alpn-01 responder and a DNS server the validator uses.
type testEnv struct {
	t      *testing.T
	ca     *ca.CA
	srv    *Server
	hs     *httptest.Server
	base   string
	dns    *testDNS
	http01 sync.Map // token → key authorization
	alpn   sync.Map // SNI → *tls.Certificate
}

type envOption func(*config.Config, *Options)

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	c, log := newTestCA(t)
	e := &testEnv{t: t, ca: c, dns: newTestDNS(t)}

	hl := listen(t)
	go http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if v, ok := e.http01.Load(tok); ok {
			if v == hang {
				<-r.Context().Done() // a web server that never answers
				return
			}
			io.WriteString(w, v.(string))
			return
		}
		http.NotFound(w, r)
	}))
	tl := tls.NewListener(listen(t), &tls.Config{
		NextProtos: []string{alpnProto},
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if v, ok := e.alpn.Load(h.ServerName); ok {
				return v.(*tls.Certificate), nil
			}
			return nil, fmt.Errorf("no challenge certificate for %q", h.ServerName)
		},
	})
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() { c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()

	e.hs = httptest.NewUnstartedServer(nil)
	e.base = "http://" + e.hs.Listener.Addr().String()
	o := Options{CA: c, Log: log, BaseURL: e.base, ValidationAttempts: 2, RetryDelay: 20 * time.Millisecond}
	o.Config = config.ACME{HTTPPort: port(hl), TLSPort: port(tl), Resolver: e.dns.addr()}
	for _, f := range opts {
		f(&c.Config, &o)
	}
	var err error
	if e.srv, err = New(o); err != nil {
		t.Fatal(err)
	}
	e.hs.Config.Handler = e.srv
	e.hs.Start()
	t.Cleanup(func() { e.hs.Close(); e.srv.Close() })
	return e
}

// newTestCA initialises a CA answering on localhost and 127.0.0.1 (wildcards allowed)
// in a temporary directory and opens it.
func newTestCA(t *testing.T) (*ca.CA, *slog.Logger) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir() + "/ca"
	cfg := config.Defaults()
	cfg.DNSNames, cfg.IPAddresses = []string{"localhost"}, []string{"127.0.0.1"}
	cfg.Policy.AllowWildcards = true
	if _, err := ca.Init(ctx, ca.InitOptions{Dir: dir, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	c, err := ca.Open(ctx, dir, "", log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, log
}

func listen(t *testing.T) net.Listener {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func port(l net.Listener) int { return l.Addr().(*net.TCPAddr).Port }

// withProvisioner replaces the provisioners by p.
func withProvisioner(p config.ACMEProvisioner) envOption {
	return func(_ *config.Config, o *Options) { o.Config.Provisioners = append(o.Config.Provisioners, p) }
}

func (e *testEnv) dirURL(prov string) string { return e.base + "/acme/" + prov + "/directory" }

func (e *testEnv) url(path string) string { return e.base + "/acme/acme/" + path }

func newKey(t testing.TB) crypto.Signer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client returns an x/crypto/acme client with a new registered account.
func (e *testEnv) client(prov string) *xacme.Client {
	e.t.Helper()
	cl := &xacme.Client{Key: newKey(e.t), DirectoryURL: e.dirURL(prov), HTTPClient: e.hs.Client()}
	if _, err := cl.Register(context.Background(), &xacme.Account{Contact: []string{"mailto:ops@example.com"}}, xacme.AcceptTOS); err != nil {
		e.t.Fatal(err)
	}
	return cl
}

// solve answers every pending authorization of an order with the given challenge
// type and waits for the order to be ready.
func (e *testEnv) solve(cl *xacme.Client, o *xacme.Order, typ string) *xacme.Order {
	e.t.Helper()
	ctx := context.Background()
	for _, u := range o.AuthzURLs {
		a, err := cl.GetAuthorization(ctx, u)
		if err != nil {
			e.t.Fatal(err)
		}
		if a.Status != xacme.StatusPending {
			continue
		}
		var ch *xacme.Challenge
		for _, c := range a.Challenges {
			if c.Type == typ {
				ch = c
			}
		}
		if ch == nil {
			e.t.Fatalf("no %s challenge for %s", typ, a.Identifier.Value)
		}
		e.publish(cl, a.Identifier, ch)
		if _, err := cl.Accept(ctx, ch); err != nil {
			e.t.Fatal(err)
		}
	}
	return e.waitOrder(cl, o.URI, "ready")
}

// publish sets up the response to a challenge on the test responders.
func (e *testEnv) publish(cl *xacme.Client, id xacme.AuthzID, ch *xacme.Challenge) {
	e.t.Helper()
	switch ch.Type {
	case http01:
		v, _ := cl.HTTP01ChallengeResponse(ch.Token)
		e.http01.Store(ch.Token, v)
	case dns01:
		v, _ := cl.DNS01ChallengeRecord(ch.Token)
		e.dns.setTXT("_acme-challenge."+id.Value, v)
	case tlsALPN01:
		c, err := cl.TLSALPN01ChallengeCert(ch.Token, id.Value)
		if err != nil {
			e.t.Fatal(err)
		}
		sni := id.Value
		if id.Type == "ip" {
			sni = reverseName(id.Value)
		}
		e.alpn.Store(sni, &c)
	}
}

// waitOrder polls an order (every 5 ms, for at most 10 s) until it has the status.
func (e *testEnv) waitOrder(cl *xacme.Client, url, status string) *xacme.Order {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		o, err := cl.GetOrder(context.Background(), url)
		if err != nil {
			e.t.Fatal(err)
		}
		if o.Status == status {
			return o
		}
		if time.Now().After(deadline) || o.Status == xacme.StatusInvalid {
			e.t.Fatalf("order %s is %s, want %s (error %v)", url, o.Status, status, o.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// csr makes a CSR for names (IPs go into iPAddress SANs) with a new P-256 key.
func csr(t testing.TB, names ...string) ([]byte, crypto.Signer) {
	return csrWithKey(t, newKey(t), names...)
}

func csrWithKey(t testing.TB, key crypto.Signer, names ...string) ([]byte, crypto.Signer) {
	tmpl := &x509.CertificateRequest{}
	if len(names) > 0 {
		tmpl.Subject = pkix.Name{CommonName: names[0]}
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

// issue runs a complete order for names with the challenge type and returns the
// chain and the order.
func (e *testEnv) issue(cl *xacme.Client, typ string, names ...string) ([][]byte, *xacme.Order) {
	e.t.Helper()
	ctx := context.Background()
	o, err := cl.AuthorizeOrder(ctx, ids(names...))
	if err != nil {
		e.t.Fatal(err)
	}
	o = e.solve(cl, o, typ)
	der, _ := csr(e.t, names...)
	chain, _, err := cl.CreateOrderCert(ctx, o.FinalizeURL, der, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return chain, o
}

func ids(names ...string) []xacme.AuthzID {
	var out []xacme.AuthzID
	for _, n := range names {
		if net.ParseIP(n) != nil {
			out = append(out, xacme.AuthzID{Type: "ip", Value: n})
		} else {
			out = append(out, xacme.AuthzID{Type: "dns", Value: n})
		}
	}
	return out
}

// ---- raw JWS requests, for the error paths x/crypto/acme cannot produce

// signer signs raw JWS requests.
type signer struct {
	key crypto.Signer // nil with alg none or HS256
	mac []byte        // HS256 key
	alg string
	kid string // account URL; empty = embed the jwk
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func jwkJSON(t testing.TB, pub crypto.PublicKey) json.RawMessage {
	b, err := (&jose.JSONWebKey{Key: pub}).MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jws builds a flattened JWS over payload with the protected header fields given.
func (s *signer) jws(t testing.TB, hdr map[string]any, payload []byte) []byte {
	t.Helper()
	if hdr["alg"] == nil {
		hdr["alg"] = s.alg
	}
	ph, _ := json.Marshal(hdr)
	input := b64(ph) + "." + b64(payload)
	var sig []byte
	switch s.alg {
	case "none":
	case "HS256":
		m := hmac.New(sha256.New, s.mac)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		sig = s.sign(t, []byte(input))
	}
	out, _ := json.Marshal(map[string]string{"protected": b64(ph), "payload": b64(payload), "signature": b64(sig)})
	return out
}

func (s *signer) sign(t testing.TB, input []byte) []byte {
	switch k := s.key.(type) {
	case *ecdsa.PrivateKey:
		h := crypto.SHA256
		if s.alg == "ES384" {
			h = crypto.SHA384
		}
		d := h.New()
		d.Write(input)
		r, ss, err := ecdsa.Sign(rand.Reader, k, d.Sum(nil))
		if err != nil {
			t.Fatal(err)
		}
		n := (k.Curve.Params().BitSize + 7) / 8
		return append(r.FillBytes(make([]byte, n)), ss.FillBytes(make([]byte, n))...)
	case *rsa.PrivateKey:
		d := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input)
	}
	t.Fatalf("unsupported key %T", s.key)
	return nil
}

// header is the usual protected header: nonce, url and kid or jwk.
func (s *signer) header(t testing.TB, nonce, url string) map[string]any {
	h := map[string]any{"nonce": nonce, "url": url}
	if s.kid != "" {
		h["kid"] = s.kid
	} else if s.key != nil {
		h["jwk"] = jwkJSON(t, s.key.Public())
	}
	return h
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
	prob   struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
		Status int    `json:"status"`
	}
}

func (e *testEnv) nonce() string {
	e.t.Helper()
	res, err := e.hs.Client().Head(e.url("new-nonce"))
	if err != nil {
		e.t.Fatal(err)
	}
	res.Body.Close()
	return res.Header.Get("Replay-Nonce")
}

// do sends a raw request and reads the response.
func (e *testEnv) do(method, url, ctype string, body []byte) *rawResponse {
	e.t.Helper()
	req, _ := http.NewRequest(method, url, bytes.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	res, err := e.hs.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	r := &rawResponse{status: res.StatusCode, header: res.Header}
	r.body, _ = io.ReadAll(res.Body)
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		json.Unmarshal(r.body, &r.prob)
	}
	return r
}

// post signs payload (nil = POST-as-GET) for url with a fresh nonce and sends it.
func (e *testEnv) post(s *signer, url string, payload any) *rawResponse {
	e.t.Helper()
	var p []byte
	switch v := payload.(type) {
	case nil:
	case []byte:
		p = v
	default:
		p, _ = json.Marshal(v)
	}
	return e.do("POST", url, "application/jose+json", s.jws(e.t, s.header(e.t, e.nonce(), url), p))
}

// register creates an account for s (setting s.kid) with a raw request.
func (e *testEnv) register(s *signer) {
	e.t.Helper()
	s.kid = ""
	r := e.post(s, e.url("new-account"), map[string]any{"termsOfServiceAgreed": true})
	if r.status != http.StatusCreated {
		e.t.Fatalf("newAccount: %d %s", r.status, r.body)
	}
	s.kid = r.header.Get("Location")
}

// wantProblem asserts an ACME problem type and status, and a fresh nonce.
func (r *rawResponse) wantProblem(t testing.TB, status int, typ string) {
	t.Helper()
	if r.status != status || r.prob.Type != errNS+typ {
		t.Fatalf("got %d %q (%s), want %d %q", r.status, r.prob.Type, r.prob.Detail, status, errNS+typ)
	}
	if r.header.Get("Replay-Nonce") == "" {
		t.Fatalf("no Replay-Nonce on the %d response", status)
	}
	if !strings.Contains(r.header.Get("Link"), `rel="index"`) && status != http.StatusNotFound {
		t.Fatalf("no index Link on the %d response: %q", status, r.header.Values("Link"))
	}
}

// rowCounts counts the rows of the ACME tables and certificates. Spent nonces are
// left out: every verified request spends its nonce, refused or not.
func (e *testEnv) rowCounts() string {
	e.t.Helper()
	var out []string
	for _, tb := range []string{"acme_accounts", "acme_orders", "acme_authzs", "acme_eab_keys", "certificates"} {
		var n int
		if err := e.ca.DB.SQL().QueryRow("SELECT COUNT(*) FROM " + tb).Scan(&n); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, tb+"="+strconv.Itoa(n))
	}
	return strings.Join(out, " ")
}

// selfSigned makes a certificate of another CA, for revocation and ARI tests.
func selfSigned(t testing.TB, key crypto.Signer, name string) *x509.Certificate {
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(42), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), SubjectKeyId: []byte{1, 2, 3}, AuthorityKeyId: []byte{1, 2, 3}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

type joseKey = jose.JSONWebKey

// decodePEMChain returns the first certificate's DER of a PEM chain.
func decodePEMChain(t testing.TB, b []byte) ([]byte, int) {
	certs, err := x509util.ParseCertsPEM(b)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0].Raw, len(certs)
}
