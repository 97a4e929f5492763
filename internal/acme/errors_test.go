package acme

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"nixpki/internal/config"
)

// Every malformed request gets its ACME problem type and status, a fresh nonce, and
// writes nothing (RFC 8555 §6).

func TestJWSErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	acct := &signer{key: newKey(t), alg: "ES256"}
	e.register(acct)
	gone := &signer{key: newKey(t), alg: "ES256"}
	e.register(gone)
	if r := e.post(gone, gone.kid, map[string]string{"status": "deactivated"}); r.status != 200 {
		t.Fatalf("deactivate: %d %s", r.status, r.body)
	}
	rsaSmall, _ := rsa.GenerateKey(rand.Reader, 1024)
	p521, _ := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	newOrder := e.url("new-order")
	payload := []byte(`{"identifiers":[{"type":"dns","value":"x.test"}]}`)
	before := e.rowCounts()

	for _, tc := range []struct {
		name   string
		body   func() []byte
		ctype  string
		url    string
		status int
		typ    string
	}{
		{"alg none", func() []byte {
			s := &signer{alg: "none", kid: acct.kid}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "badSignatureAlgorithm"},
		{"HMAC", func() []byte {
			s := &signer{alg: "HS256", mac: []byte("secret"), kid: acct.kid}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "badSignatureAlgorithm"},
		{"url mismatch", func() []byte {
			return acct.jws(t, acct.header(t, e.nonce(), e.url("new-account")), payload)
		}, "", newOrder, 403, "unauthorized"},
		{"no url", func() []byte {
			h := acct.header(t, e.nonce(), newOrder)
			delete(h, "url")
			return acct.jws(t, h, payload)
		}, "", newOrder, 400, "malformed"},
		{"jwk and kid", func() []byte {
			h := acct.header(t, e.nonce(), newOrder)
			h["jwk"] = jwkJSON(t, acct.key.Public())
			return acct.jws(t, h, payload)
		}, "", newOrder, 400, "malformed"},
		{"neither jwk nor kid", func() []byte {
			return acct.jws(t, map[string]any{"nonce": e.nonce(), "url": newOrder}, payload)
		}, "", newOrder, 400, "malformed"},
		{"unknown kid", func() []byte {
			s := &signer{key: acct.key, alg: "ES256", kid: e.url("account/nope")}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "accountDoesNotExist"},
		{"kid of another directory", func() []byte {
			s := &signer{key: acct.key, alg: "ES256", kid: "https://elsewhere.test/acme/acme/account/x"}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "accountDoesNotExist"},
		{"deactivated account", func() []byte {
			return gone.jws(t, gone.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 403, "unauthorized"},
		{"bad signature", func() []byte {
			s := &signer{key: newKey(t), alg: "ES256", kid: acct.kid}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "malformed"},
		{"alg does not match key", func() []byte {
			s := &signer{key: acct.key, alg: "ES384", kid: acct.kid}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "malformed"},
		{"no nonce", func() []byte {
			h := acct.header(t, "", newOrder)
			delete(h, "nonce")
			return acct.jws(t, h, payload)
		}, "", newOrder, 400, "badNonce"},
		{"forged nonce", func() []byte {
			return acct.jws(t, acct.header(t, "AAAAAGsEQnT902msKwEaAMsNmc-f1TvV8PAhzmm6qec", newOrder), payload)
		}, "", newOrder, 400, "badNonce"},
		{"expired nonce", func() []byte {
			old := &nonces{key: e.srv.nonces.key, now: func() time.Time { return time.Now().Add(-2 * time.Hour) }}
			return acct.jws(t, acct.header(t, old.make(), newOrder), payload)
		}, "", newOrder, 400, "badNonce"},
		{"kid on newAccount", func() []byte {
			return acct.jws(t, acct.header(t, e.nonce(), e.url("new-account")), []byte(`{}`))
		}, "", e.url("new-account"), 400, "malformed"},
		{"jwk on newOrder", func() []byte {
			s := &signer{key: acct.key, alg: "ES256"}
			return s.jws(t, s.header(t, e.nonce(), newOrder), payload)
		}, "", newOrder, 400, "malformed"},
		{"RSA-1024 account key", func() []byte {
			s := &signer{key: rsaSmall, alg: "RS256"}
			return s.jws(t, s.header(t, e.nonce(), e.url("new-account")), []byte(`{}`))
		}, "", e.url("new-account"), 400, "badPublicKey"},
		{"P-521 account key", func() []byte {
			s := &signer{key: p521, alg: "ES256"}
			return s.jws(t, s.header(t, e.nonce(), e.url("new-account")), []byte(`{}`))
		}, "", e.url("new-account"), 400, "badPublicKey"},
		{"wrong content type", func() []byte {
			return acct.jws(t, acct.header(t, e.nonce(), newOrder), payload)
		}, "application/json", newOrder, 415, "malformed"},
		{"not JSON", func() []byte { return []byte("eyJhbGciOi.x.y") }, "", newOrder, 400, "malformed"},
		{"general serialization", func() []byte {
			var f map[string]any
			json.Unmarshal(acct.jws(t, acct.header(t, e.nonce(), newOrder), payload), &f)
			b, _ := json.Marshal(map[string]any{"payload": f["payload"], "signatures": []any{map[string]any{"protected": f["protected"], "signature": f["signature"]}}})
			return b
		}, "", newOrder, 400, "malformed"},
		{"unprotected header", func() []byte {
			var f map[string]any
			json.Unmarshal(acct.jws(t, acct.header(t, e.nonce(), newOrder), payload), &f)
			f["header"] = map[string]string{"kid": "x"}
			b, _ := json.Marshal(f)
			return b
		}, "", newOrder, 400, "malformed"},
		{"payload not JSON", func() []byte {
			return acct.jws(t, acct.header(t, e.nonce(), newOrder), []byte("{"))
		}, "", newOrder, 400, "malformed"},
		{"POST-as-GET to newOrder", func() []byte {
			return acct.jws(t, acct.header(t, e.nonce(), newOrder), nil)
		}, "", newOrder, 400, "malformed"},
	} {
		ctype := tc.ctype
		if ctype == "" {
			ctype = "application/jose+json"
		}
		r := e.do("POST", tc.url, ctype, tc.body())
		func() {
			defer func() {
				if t.Failed() {
					t.Logf("case %q", tc.name)
				}
			}()
			r.wantProblem(t, tc.status, tc.typ)
		}()
		if tc.typ == "badSignatureAlgorithm" && !strings.Contains(string(r.body), `"algorithms"`) {
			t.Fatalf("%s: no algorithms list: %s", tc.name, r.body)
		}
	}
	if after := e.rowCounts(); after != before {
		t.Fatalf("bad requests wrote state:\nbefore %s\nafter  %s", before, after)
	}
}

func TestNonceReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := &signer{key: newKey(t), alg: "ES256"}
	e.register(s)
	n := e.nonce()
	body := s.jws(t, s.header(t, n, s.kid), nil)
	if r := e.do("POST", s.kid, "application/jose+json", body); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.body)
	}
	e.do("POST", s.kid, "application/jose+json", body).wantProblem(t, 400, "badNonce")
	// A state change spends its nonce too.
	n = e.nonce()
	body = s.jws(t, s.header(t, n, e.url("new-order")), []byte(`{"identifiers":[{"type":"dns","value":"n.test"}]}`))
	if r := e.do("POST", e.url("new-order"), "application/jose+json", body); r.status != 201 {
		t.Fatalf("order: %d %s", r.status, r.body)
	}
	e.do("POST", e.url("new-order"), "application/jose+json", body).wantProblem(t, 400, "badNonce")
}

func TestAlgorithms(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, ek, _ := ed25519.GenerateKey(rand.Reader)
	for _, s := range []*signer{{key: newKey(t), alg: "ES256"}, {key: p384, alg: "ES384"}, {key: rk, alg: "RS256"}, {key: ek, alg: "EdDSA"}} {
		e.register(s)
		if r := e.post(s, e.url("new-order"), map[string]any{"identifiers": ids("alg.test")}); r.status != 201 {
			t.Fatalf("%s: %d %s", s.alg, r.status, r.body)
		}
	}
}

func TestResourceErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	b := &signer{key: newKey(t), alg: "ES256"}
	e.register(b)
	r := e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("res.test")})
	var o struct {
		Authorizations []string
		Finalize       string
	}
	jsonBody(t, r.body, &o)
	orderURL := r.header.Get("Location")
	csrDER, _ := csr(t, "res.test")
	before := e.rowCounts()

	e.post(a, e.url("new-account"), nil).wantProblem(t, 400, "malformed") // kid on newAccount
	e.post(&signer{key: newKey(t), alg: "ES256"}, e.url("new-account"), map[string]any{"onlyReturnExisting": true}).wantProblem(t, 400, "accountDoesNotExist")
	e.post(&signer{key: newKey(t), alg: "ES256"}, e.url("new-account"), map[string]any{"contact": []string{"tel:+1555"}}).wantProblem(t, 400, "unsupportedContact")
	e.post(&signer{key: newKey(t), alg: "ES256"}, e.url("new-account"), map[string]any{"contact": []string{"mailto:not an address"}}).wantProblem(t, 400, "invalidContact")
	e.post(a, a.kid, map[string]any{"contact": []string{"mailto:a@b.test,c@d.test"}}).wantProblem(t, 400, "invalidContact")
	e.post(a, a.kid, map[string]any{"status": "valid2"}).wantProblem(t, 400, "malformed")
	e.post(b, a.kid, nil).wantProblem(t, 403, "unauthorized")
	e.post(b, a.kid+"/orders", nil).wantProblem(t, 403, "unauthorized")
	e.post(b, orderURL, nil).wantProblem(t, 403, "unauthorized")
	e.post(b, o.Authorizations[0], nil).wantProblem(t, 403, "unauthorized")
	e.post(b, o.Authorizations[0]+"x", nil).wantProblem(t, 404, "malformed")
	e.post(a, e.url("order/nope"), nil).wantProblem(t, 404, "malformed")
	e.post(a, e.url("chall/"+strings.TrimPrefix(o.Authorizations[0], e.url("authz/"))+"/tls-sni-01"), map[string]any{}).wantProblem(t, 404, "malformed")
	e.post(a, o.Authorizations[0], map[string]any{"status": "valid"}).wantProblem(t, 400, "malformed")
	e.post(a, o.Finalize, map[string]any{"csr": b64(csrDER)}).wantProblem(t, 403, "orderNotReady")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": []any{}}).wantProblem(t, 400, "malformed")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": []map[string]string{{"type": "email", "value": "a@b.test"}}}).wantProblem(t, 400, "unsupportedIdentifier")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "bad_name!.test"}}}).wantProblem(t, 400, "rejectedIdentifier")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": []map[string]string{{"type": "ip", "value": "not-an-ip"}}}).wantProblem(t, 400, "malformed")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("p.test"), "profile": "nope"}).wantProblem(t, 400, "invalidProfile")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("p.test"), "notAfter": "tomorrow"}).wantProblem(t, 400, "malformed")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("p.test"), "replaces": "not-a-cert-id"}).wantProblem(t, 400, "malformed")
	e.post(a, e.url("cert/abcd"), nil).wantProblem(t, 404, "malformed")
	e.post(a, e.url("revoke-cert"), map[string]any{"certificate": "!!"}).wantProblem(t, 400, "malformed")
	foreign := selfSigned(t, a.key, "f.test")
	e.post(a, e.url("revoke-cert"), map[string]any{"certificate": b64(foreign.Raw)}).wantProblem(t, 404, "malformed")
	e.do("GET", e.url("new-order"), "", nil).wantProblem(t, 405, "malformed")
	e.do("GET", e.base+"/acme/nope/directory", "", nil).wantProblem(t, 404, "malformed")
	e.do("GET", e.url("nothing-here"), "", nil).wantProblem(t, 404, "malformed")
	if after := e.rowCounts(); after != before {
		t.Fatalf("bad requests wrote state:\nbefore %s\nafter  %s", before, after)
	}
}

// TestFinalizeAndRevokeErrors covers CSRs that do not match the order, download and
// revocation by the wrong account, bad reasons and double revocation.
func TestFinalizeAndRevokeErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withProvisioner(config.ACMEProvisioner{Name: "acme", KeyTypes: []string{"p256", "rsa"}}))
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	b := &signer{key: newKey(t), alg: "ES256"}
	e.register(b)
	ready := func(names ...string) (string, string) {
		r := e.post(a, e.url("new-order"), map[string]any{"identifiers": ids(names...)})
		var o struct {
			Authorizations []string
			Finalize       string
		}
		jsonBody(t, r.body, &o)
		for _, az := range o.Authorizations {
			var z struct {
				Identifier struct{ Value string }
				Challenges []struct{ Type, URL, Token string }
			}
			jsonBody(t, e.post(a, az, nil).body, &z)
			for _, c := range z.Challenges {
				if c.Type == http01 {
					e.http01.Store(c.Token, c.Token+"."+thumb(t, a))
					e.post(a, c.URL, map[string]any{})
				}
			}
		}
		waitStatus(t, e, a, r.header.Get("Location"), "ready")
		return r.header.Get("Location"), o.Finalize
	}
	_, fin := ready("fin.test", "127.0.0.1")
	before := e.rowCounts()
	extra, _ := csr(t, "fin.test", "127.0.0.1", "extra.test")
	short, _ := csr(t, "fin.test")
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	wrongKey, _ := csrWithKey(t, p384, "fin.test", "127.0.0.1")
	badSig, _ := csr(t, "fin.test", "127.0.0.1")
	badSig[len(badSig)-3] ^= 0xff
	for _, der := range [][]byte{extra, short, wrongKey, badSig, []byte("junk")} {
		e.post(a, fin, map[string]any{"csr": b64(der)}).wantProblem(t, 400, "badCSR")
	}
	e.post(a, fin, map[string]any{"csr": "!!"}).wantProblem(t, 400, "malformed")
	e.post(b, fin, map[string]any{"csr": b64(extra)}).wantProblem(t, 403, "unauthorized")
	if after := e.rowCounts(); after != before {
		t.Fatalf("bad finalizations wrote state:\nbefore %s\nafter  %s", before, after)
	}
	// The lego 4.9 form: an IP as a dns identifier, an iPAddress SAN in the CSR.
	r := e.post(a, e.url("new-order"), map[string]any{"identifiers": []map[string]string{{"type": "dns", "value": "127.0.0.1"}}})
	if r.status != 201 || !strings.Contains(string(r.body), `"type": "ip"`) {
		t.Fatalf("IP as dns identifier: %d %s", r.status, r.body)
	}
	good, _ := csr(t, "fin.test", "127.0.0.1")
	r = e.post(a, fin, map[string]any{"csr": b64(good)})
	var done struct{ Status, Certificate string }
	jsonBody(t, r.body, &done)
	if r.status != 200 || done.Status != "valid" {
		t.Fatalf("finalize: %d %s", r.status, r.body)
	}
	e.post(a, fin, map[string]any{"csr": b64(good)}).wantProblem(t, 403, "orderNotReady")
	e.post(b, done.Certificate, nil).wantProblem(t, 403, "unauthorized")
	cert := e.post(a, done.Certificate, nil)
	leaf, _ := decodePEMChain(t, cert.body)
	e.post(b, e.url("revoke-cert"), map[string]any{"certificate": b64(leaf)}).wantProblem(t, 403, "unauthorized")
	e.post(&signer{key: newKey(t), alg: "ES256"}, e.url("revoke-cert"), map[string]any{"certificate": b64(leaf)}).wantProblem(t, 403, "unauthorized")
	for _, reason := range []int{7, 6, 11, -1} {
		e.post(a, e.url("revoke-cert"), map[string]any{"certificate": b64(leaf), "reason": reason}).wantProblem(t, 400, "badRevocationReason")
	}
	if r := e.post(a, e.url("revoke-cert"), map[string]any{"certificate": b64(leaf), "reason": 1}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	e.post(a, e.url("revoke-cert"), map[string]any{"certificate": b64(leaf)}).wantProblem(t, 400, "alreadyRevoked")
}

func TestKeyChangeErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	newK := &signer{key: newKey(t), alg: "ES256"}
	kc := e.url("key-change")
	inner := func(hdr map[string]any, payload any) []byte {
		p, _ := json.Marshal(payload)
		return newK.jws(t, hdr, p)
	}
	good := map[string]any{"account": a.kid, "oldKey": jwkJSON(t, a.key.Public())}
	before := e.rowCounts()
	e.post(a, kc, inner(map[string]any{"jwk": jwkJSON(t, newK.key.Public()), "url": e.url("new-order")}, good)).wantProblem(t, 400, "malformed")
	e.post(a, kc, inner(map[string]any{"kid": a.kid, "url": kc}, good)).wantProblem(t, 400, "malformed")
	e.post(a, kc, inner(map[string]any{"jwk": jwkJSON(t, newK.key.Public()), "url": kc}, map[string]any{"account": a.kid, "oldKey": jwkJSON(t, newKey(t).Public())})).wantProblem(t, 403, "unauthorized")
	e.post(a, kc, inner(map[string]any{"jwk": jwkJSON(t, newK.key.Public()), "url": kc}, map[string]any{"account": e.url("account/x"), "oldKey": jwkJSON(t, a.key.Public())})).wantProblem(t, 403, "unauthorized")
	e.post(a, kc, inner(map[string]any{"jwk": jwkJSON(t, a.key.Public()), "url": kc, "alg": "ES256"}, good)).wantProblem(t, 400, "malformed") // signed by another key than its jwk
	e.post(&signer{key: a.key, alg: "ES256"}, kc, inner(map[string]any{"jwk": jwkJSON(t, newK.key.Public()), "url": kc}, good)).wantProblem(t, 400, "malformed")
	if after := e.rowCounts(); after != before {
		t.Fatalf("bad key changes wrote state:\nbefore %s\nafter  %s", before, after)
	}
	if r := e.post(a, kc, inner(map[string]any{"jwk": jwkJSON(t, newK.key.Public()), "url": kc}, good)); r.status != 200 {
		t.Fatalf("keyChange: %d %s", r.status, r.body)
	}
}

func TestPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withProvisioner(config.ACMEProvisioner{
		Name: "acme", AllowedDNS: []string{"internal", ".tail.test"}, DeniedDNS: []string{"secret.internal"},
		AllowedIP: []string{"100.64.0.0/10", "127.0.0.0/8"}, DeniedIP: []string{"100.100.100.100/32"},
		MaxValidity: config.Duration(30 * 24 * time.Hour), OrdersPerMinute: 3, MaxBodyBytes: 2048,
	}), withProvisioner(config.ACMEProvisioner{Name: "limited", RequestsPerMinuteIP: 3}),
		withProvisioner(config.ACMEProvisioner{Name: "quick", NonceLifetime: config.Duration(5 * time.Second)}))
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	before := e.rowCounts()
	for _, id := range []map[string]string{
		{"type": "dns", "value": "app.example.test"}, // outside the allowed suffixes
		{"type": "dns", "value": "tail.test"},        // ".tail.test" allows names under it only
		{"type": "dns", "value": "db.secret.internal"},
		{"type": "ip", "value": "192.0.2.1"},
		{"type": "ip", "value": "100.100.100.100"},
	} {
		r := e.post(a, e.url("new-order"), map[string]any{"identifiers": []any{id}})
		r.wantProblem(t, 400, "rejectedIdentifier")
		if !strings.Contains(string(r.body), "subproblems") {
			t.Fatalf("no subproblems: %s", r.body)
		}
	}
	e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("x.internal"), "notAfter": time.Now().Add(60 * 24 * time.Hour).Format(time.RFC3339)}).wantProblem(t, 400, "malformed")
	e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("x.internal"), "pad": strings.Repeat("x", 4096)}).wantProblem(t, 413, "malformed")
	if after := e.rowCounts(); after != before {
		t.Fatalf("refused orders wrote state:\nbefore %s\nafter  %s", before, after)
	}
	for i, n := range []string{"a.internal", "b.tail.test", "100.64.1.2"} {
		if r := e.post(a, e.url("new-order"), map[string]any{"identifiers": ids(n)}); r.status != 201 {
			t.Fatalf("order %d: %d %s", i, r.status, r.body)
		}
	}
	r := e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("d.internal")})
	r.wantProblem(t, 429, "rateLimited")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After on rateLimited")
	}
	// The provisioner's maximum validity caps the 90-day profile.
	if v := e.srv.provs["acme"].maxValidity; v != 30*24*time.Hour {
		t.Fatalf("max validity %s", v)
	}
	// Per-IP limit.
	lim := e.base + "/acme/limited/directory"
	for i := range 4 {
		r := e.do("GET", lim, "", nil)
		if i < 3 && r.status != 200 {
			t.Fatalf("request %d: %d", i, r.status)
		}
		if i == 3 {
			r.wantProblem(t, 429, "rateLimited")
		}
	}
	// Nonce lifetime.
	q := &signer{key: newKey(t), alg: "ES256"}
	quickURL := e.base + "/acme/quick/new-account"
	res := e.do("HEAD", e.base+"/acme/quick/new-nonce", "", nil)
	old := &nonces{key: e.srv.nonces.key, now: func() time.Time { return time.Now().Add(-time.Minute) }}
	e.do("POST", quickURL, "application/jose+json", q.jws(t, q.header(t, old.make(), quickURL), []byte(`{}`))).wantProblem(t, 400, "badNonce")
	if r := e.do("POST", quickURL, "application/jose+json", q.jws(t, q.header(t, res.header.Get("Replay-Nonce"), quickURL), []byte(`{}`))); r.status != 201 {
		t.Fatalf("fresh nonce: %d %s", r.status, r.body)
	}
}

func TestValidationFailure(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := &signer{key: newKey(t), alg: "ES256"}
	e.register(a)
	r := e.post(a, e.url("new-order"), map[string]any{"identifiers": ids("fail.test")})
	orderURL := r.header.Get("Location")
	var o struct{ Authorizations []string }
	jsonBody(t, r.body, &o)
	var z struct {
		Challenges []struct{ Type, URL, Token string }
	}
	jsonBody(t, e.post(a, o.Authorizations[0], nil).body, &z)
	for _, c := range z.Challenges {
		if c.Type == http01 {
			e.http01.Store(c.Token, "wrong")
			e.post(a, c.URL, map[string]any{})
		}
	}
	waitStatus(t, e, a, orderURL, "invalid")
	body := string(e.post(a, o.Authorizations[0], nil).body)
	if !strings.Contains(body, errIncorrectResponse) || !strings.Contains(body, `"status": "invalid"`) {
		t.Fatalf("authz after a failed validation: %s", body)
	}
}

func waitStatus(t *testing.T, e *testEnv, s *signer, url, status string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		var o struct{ Status string }
		jsonBody(t, e.post(s, url, nil).body, &o)
		if o.Status == status {
			return
		}
	}
	t.Fatalf("%s never became %s", url, status)
}

func thumb(t testing.TB, s *signer) string {
	k, err := newJWKKey(&joseKey{Key: s.key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	return k.thumb
}

var _ = http.StatusOK

// A nonce lives its whole lifetime, whatever the sub-second moment it was issued at.
func TestNonceLifetimeBoundary(t *testing.T) {
	t.Parallel()
	key := make([]byte, 32)
	for _, ms := range []int64{0, 1, 500, 999} {
		issued := time.Unix(1_800_000_000, ms*int64(time.Millisecond))
		clock := issued
		n := &nonces{key: key, now: func() time.Time { return clock }, maxLife: time.Hour}
		s := n.make()
		clock = issued.Add(time.Second - time.Millisecond)
		if _, err := n.check(s, time.Second); err != nil {
			t.Fatalf("issued at +%d ms, checked 999 ms later with a 1 s lifetime: %v", ms, err)
		}
		clock = issued.Add(time.Second + time.Millisecond)
		if _, err := n.check(s, time.Second); err == nil {
			t.Fatalf("issued at +%d ms, checked 1001 ms later with a 1 s lifetime: accepted", ms)
		}
	}
}

// A nonce of a server writing its issue time in seconds (before milliseconds) is
// still read right: fresh is accepted, old is expired.
func TestNonceInSeconds(t *testing.T) {
	t.Parallel()
	now := time.Unix(1_800_000_000, 0)
	n := &nonces{key: make([]byte, 32), now: func() time.Time { return now }, maxLife: time.Hour}
	seconds := func(issued time.Time) string {
		var b [nonceLen]byte
		binary.BigEndian.PutUint64(b[:8], uint64(issued.Unix()))
		copy(b[nonceRaw:], n.mac(b[:nonceRaw]))
		return base64.RawURLEncoding.EncodeToString(b[:])
	}
	if _, err := n.check(seconds(now.Add(-10*time.Second)), time.Minute); err != nil {
		t.Fatalf("a 10 s old nonce in seconds, 1 min lifetime: %v", err)
	}
	if _, err := n.check(seconds(now.Add(-2*time.Minute)), time.Minute); err == nil {
		t.Fatal("a 2 min old nonce in seconds, 1 min lifetime: accepted")
	}
}
