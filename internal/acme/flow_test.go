package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"

	"nixpki/internal/config"
)

func TestIssueEveryChallengeAndIdentifier(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	for _, tc := range []struct {
		typ   string
		names []string
	}{
		{http01, []string{"app.test", "www.app.test"}},
		{dns01, []string{"db.test"}},
		{tlsALPN01, []string{"web.test"}},
		{http01, []string{"127.0.0.1"}},
		{tlsALPN01, []string{"127.0.0.1"}},
		{dns01, []string{"*.wild.test"}},
	} {
		func() {
			chain, o := e.issue(cl, tc.typ, tc.names...)
			if len(chain) != 2 {
				t.Fatalf("chain has %d certificates, want leaf and intermediate", len(chain))
			}
			leaf, err := x509.ParseCertificate(chain[0])
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			got = append(got, leaf.DNSNames...)
			for _, ip := range leaf.IPAddresses {
				got = append(got, ip.String())
			}
			if strings.Join(got, ",") != strings.Join(tc.names, ",") {
				t.Fatalf("SANs %v, want %v", got, tc.names)
			}
			if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 89*24*time.Hour || d > 91*24*time.Hour {
				t.Fatalf("default profile gave a %s certificate, want 90 days", d)
			}
			roots := x509.NewCertPool()
			roots.AddCert(e.ca.Root)
			inter := x509.NewCertPool()
			inter.AddCert(e.ca.TLS.Cert)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil {
				t.Fatal(err)
			}
			if o.Profile != "tlsserver" {
				t.Fatalf("order profile %q, want tlsserver", o.Profile)
			}
		}()
	}
}

func TestDownloadHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := &signer{key: newKey(t), alg: "ES256"}
	e.register(s)
	cl := &xacme.Client{Key: s.key, DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	_, o := e.issue(cl, http01, "dl.test")
	o, _ = cl.GetOrder(context.Background(), o.URI)
	r := e.post(s, o.CertURL, nil)
	if r.status != 200 || r.header.Get("Content-Type") != "application/pem-certificate-chain" {
		t.Fatalf("download: %d %q", r.status, r.header.Get("Content-Type"))
	}
	if strings.Count(string(r.body), "BEGIN CERTIFICATE") != 2 || r.header.Get("Replay-Nonce") == "" {
		t.Fatalf("download body or nonce missing: %s", r.body)
	}
	if l := r.header.Get("Link"); !strings.Contains(l, `;rel="index"`) {
		t.Fatalf("Link %q", l)
	}
	// The orders list has it, and pending resources carry Retry-After.
	acct := e.post(s, s.kid, nil)
	var a struct{ Orders string }
	jsonBody(t, acct.body, &a)
	list := e.post(s, a.Orders, nil)
	if !strings.Contains(string(list.body), o.URI) || !strings.Contains(string(list.body), `"orders"`) {
		t.Fatalf("orders list %s lacks %s", list.body, o.URI)
	}
	po, err := cl.AuthorizeOrder(context.Background(), ids("pending.test"))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{po.URI, po.AuthzURLs[0]} {
		if r := e.post(s, u, nil); r.header.Get("Retry-After") == "" {
			t.Fatalf("no Retry-After on pending %s", u)
		}
	}
	// newNonce: HEAD 200, GET 204; the directory is pretty-printed.
	if r := e.do("GET", e.url("new-nonce"), "", nil); r.status != 204 || r.header.Get("Replay-Nonce") == "" {
		t.Fatalf("GET newNonce: %d", r.status)
	}
	if r := e.do("GET", e.dirURL("acme"), "", nil); !strings.Contains(string(r.body), "\n  \"keyChange\"") {
		t.Fatalf("directory: %s", r.body)
	}
}

func TestProfiles(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	dir, _ := cl.Discover(ctx)
	if len(dir.Profiles) != 2 {
		t.Fatalf("profiles %v", dir.Profiles)
	}
	o, err := cl.AuthorizeOrder(ctx, ids("short.test"), xacme.WithOrderIssuanceProfile("shortlived"))
	if err != nil {
		t.Fatal(err)
	}
	o = e.solve(cl, o, http01)
	der, _ := csr(t, "short.test")
	chain, _, err := cl.CreateOrderCert(ctx, o.FinalizeURL, der, false)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(chain[0])
	if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 7*24*time.Hour+2*time.Minute || d < 6*24*time.Hour {
		t.Fatalf("shortlived gave %s", d)
	}
	if o.Profile != "shortlived" {
		t.Fatalf("order profile %q", o.Profile)
	}
}

func TestOrderReuse(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	a, err := cl.AuthorizeOrder(ctx, ids("reuse.test", "127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := cl.AuthorizeOrder(ctx, ids("127.0.0.1", "REUSE.test"))
	if err != nil {
		t.Fatal(err)
	}
	if a.URI != b.URI {
		t.Fatalf("the same identifiers gave two live orders: %s, %s", a.URI, b.URI)
	}
	c, _ := cl.AuthorizeOrder(ctx, ids("reuse.test"))
	if c.URI == a.URI {
		t.Fatal("different identifiers reused an order")
	}
	e.solve(cl, a, http01)
	der, _ := csr(t, "reuse.test", "127.0.0.1")
	if _, _, err := cl.CreateOrderCert(ctx, a.FinalizeURL, der, false); err != nil {
		t.Fatal(err)
	}
	d, _ := cl.AuthorizeOrder(ctx, ids("reuse.test", "127.0.0.1"))
	if d.URI == a.URI || d.Status != xacme.StatusPending {
		t.Fatal("a valid order was reused")
	}
}

// TestConcurrentOrders runs many complete orders of one account at once: no
// conflicts, every one issued.
func TestConcurrentOrders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			name := "c" + string(rune('a'+i)) + ".test"
			o, err := cl.AuthorizeOrder(ctx, ids(name))
			if err != nil {
				errs <- err
				return
			}
			a, err := cl.GetAuthorization(ctx, o.AuthzURLs[0])
			if err != nil {
				errs <- err
				return
			}
			for _, ch := range a.Challenges {
				if ch.Type == http01 {
					v, _ := cl.HTTP01ChallengeResponse(ch.Token)
					e.http01.Store(ch.Token, v)
					if _, err := cl.Accept(ctx, ch); err != nil {
						errs <- err
						return
					}
				}
			}
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
				o, err = cl.GetOrder(ctx, o.URI)
				if err != nil || o.Status == "ready" || time.Now().After(deadline) {
					break
				}
			}
			der, _ := csr(t, name)
			_, _, err = cl.CreateOrderCert(ctx, o.FinalizeURL, der, false)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestKeyChange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	acct, err := cl.GetReg(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	old := cl.Key
	newK := newKey(t)
	if err := cl.AccountKeyRollover(ctx, newK); err != nil {
		t.Fatal(err)
	}
	// The new key finds the same account; the old one finds none.
	cl2 := &xacme.Client{Key: newK, DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	a2, err := cl2.GetReg(ctx, "")
	if err != nil || a2.URI != acct.URI {
		t.Fatalf("new key: %v %v", a2, err)
	}
	cl3 := &xacme.Client{Key: old, DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	if _, err := cl3.GetReg(ctx, ""); !errors.Is(err, xacme.ErrNoAccount) {
		t.Fatalf("old key still finds the account: %v", err)
	}
	// Rolling over to a key another account has is a 409 naming that account.
	other := e.client("acme")
	otherAcct, _ := other.GetReg(ctx, "")
	err = cl2.AccountKeyRollover(ctx, other.Key)
	var ae *xacme.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict || ae.Header.Get("Location") != otherAcct.URI {
		t.Fatalf("rollover to a used key: %v", err)
	}
	if _, err := cl2.AuthorizeOrder(ctx, ids("after-rollover.test")); err != nil {
		t.Fatal(err)
	}
}

func TestAccountUpdateAndDeactivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	a, err := cl.UpdateReg(ctx, &xacme.Account{Contact: []string{"mailto:new@example.com"}})
	if err != nil || len(a.Contact) != 1 || a.Contact[0] != "mailto:new@example.com" {
		t.Fatalf("update: %v %v", a, err)
	}
	o, err := cl.AuthorizeOrder(ctx, ids("deact.test"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.DeactivateReg(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = cl.GetOrder(ctx, o.URI)
	var ae *xacme.Error
	if !errors.As(err, &ae) || ae.ProblemType != errUnauthorized || ae.StatusCode != http.StatusForbidden {
		t.Fatalf("deactivated account still works: %v", err)
	}
	if _, err := cl.Register(ctx, &xacme.Account{}, xacme.AcceptTOS); err == nil {
		t.Fatal("re-registering a deactivated key succeeded")
	}
}

func TestAuthzDeactivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	o, _ := cl.AuthorizeOrder(ctx, ids("authz-deact.test"))
	if err := cl.RevokeAuthorization(ctx, o.AuthzURLs[0]); err != nil {
		t.Fatal(err)
	}
	a, _ := cl.GetAuthorization(ctx, o.AuthzURLs[0])
	o2, _ := cl.GetOrder(ctx, o.URI)
	if a.Status != "deactivated" || o2.Status != "invalid" {
		t.Fatalf("authz %s, order %s", a.Status, o2.Status)
	}
}

func TestEAB(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withProvisioner(config.ACMEProvisioner{Name: "eab", RequireEAB: true}))
	ctx := context.Background()
	k, err := NewEABKey(ctx, e.ca.DB, "eab", "test", time.Now)
	if err != nil {
		t.Fatal(err)
	}
	dir := e.dirURL("eab")
	reg := func(eab *xacme.ExternalAccountBinding) error {
		cl := &xacme.Client{Key: newKey(t), DirectoryURL: dir, HTTPClient: e.hs.Client()}
		_, err := cl.Register(ctx, &xacme.Account{ExternalAccountBinding: eab}, xacme.AcceptTOS)
		return err
	}
	wantType := func(err error, typ string) {
		t.Helper()
		var ae *xacme.Error
		if !errors.As(err, &ae) || ae.ProblemType != errNS+typ || ae.Header.Get("Replay-Nonce") == "" {
			t.Fatalf("got %v, want %s", err, typ)
		}
	}
	wantType(reg(nil), "externalAccountRequired")
	wantType(reg(&xacme.ExternalAccountBinding{KID: "nope", Key: k.Key}), "unauthorized")
	wantType(reg(&xacme.ExternalAccountBinding{KID: k.KID, Key: []byte("wrong key wrong key wrong key!!!")}), "unauthorized")
	if err := reg(&xacme.ExternalAccountBinding{KID: k.KID, Key: k.Key}); err != nil {
		t.Fatal(err)
	}
	wantType(reg(&xacme.ExternalAccountBinding{KID: k.KID, Key: k.Key}), "unauthorized") // bound once
	keys, _ := e.ca.DB.ListACMEEABKeys(ctx, "eab")
	if len(keys) != 1 || keys[0].BoundAccount == "" {
		t.Fatalf("EAB key not bound: %+v", keys)
	}
	var d struct {
		Meta struct{ ExternalAccountRequired bool }
	}
	jsonBody(t, e.do("GET", dir, "", nil).body, &d)
	if !d.Meta.ExternalAccountRequired {
		t.Fatal("directory does not say EAB is required")
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cl := e.client("acme")
	ctx := context.Background()
	chain, _ := e.issue(cl, http01, "revoke.test")
	if err := cl.RevokeCert(ctx, nil, chain[0], xacme.CRLReasonSuperseded); err != nil {
		t.Fatal(err)
	}
	rec, _ := e.ca.DB.GetCert(ctx, serialOf(t, chain[0]))
	if !rec.Revoked() || rec.Reason != 4 {
		t.Fatalf("not revoked: %+v", rec)
	}
	// By the certificate's own key, from a client with no account.
	ord, _ := cl.AuthorizeOrder(ctx, ids("revoke2.test"))
	ord = e.solve(cl, ord, http01)
	der, certKey := csr(t, "revoke2.test")
	chain2, _, err := cl.CreateOrderCert(ctx, ord.FinalizeURL, der, false)
	if err != nil {
		t.Fatal(err)
	}
	anon := &xacme.Client{Key: newKey(t), DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	if err := anon.RevokeCert(ctx, certKey, chain2[0], xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	rec, _ = e.ca.DB.GetCert(ctx, serialOf(t, chain2[0]))
	if !rec.Revoked() || rec.Reason != 1 {
		t.Fatalf("not revoked: %+v", rec)
	}
}

func serialOf(t testing.TB, der []byte) string {
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return strings.ToLower(c.SerialNumber.Text(16))
}

func TestRenewalInfo(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	s := &signer{key: newKey(t), alg: "ES256"}
	e.register(s)
	cl := &xacme.Client{Key: s.key, DirectoryURL: e.dirURL("acme"), HTTPClient: e.hs.Client()}
	chain, _ := e.issue(cl, http01, "ari.test")
	leaf, _ := x509.ParseCertificate(chain[0])
	id := b64(leaf.AuthorityKeyId) + "." + b64(leaf.SerialNumber.Bytes())
	r := e.do("GET", e.url("renewal-info/"+id), "", nil)
	var ri struct {
		SuggestedWindow struct{ Start, End time.Time }
	}
	jsonBody(t, r.body, &ri)
	left := leaf.NotAfter.Sub(ri.SuggestedWindow.Start)
	if r.status != 200 || r.header.Get("Retry-After") == "" || left < 29*24*time.Hour || left > 31*24*time.Hour || !ri.SuggestedWindow.End.After(ri.SuggestedWindow.Start) {
		t.Fatalf("renewalInfo: %d %s", r.status, r.body)
	}
	// Unknown certificates: 404.
	if r := e.do("GET", e.url("renewal-info/"+b64([]byte{9, 9})+"."+b64([]byte{1})), "", nil); r.status != 404 {
		t.Fatalf("unknown certID: %d", r.status)
	}
	// replaces: recorded for our certificate; a second order replacing it conflicts.
	order := func(replaces string) *rawResponse {
		return e.post(s, e.url("new-order"), map[string]any{"identifiers": ids("ari.test"), "replaces": replaces})
	}
	r = order(id)
	if r.status != 201 || !strings.Contains(string(r.body), `"replaces": "`+id+`"`) {
		t.Fatalf("replacing order: %d %s", r.status, r.body)
	}
	var first struct{ Authorizations []string }
	jsonBody(t, r.body, &first)
	other := &signer{key: newKey(t), alg: "ES256"}
	e.register(other)
	if r := e.post(other, e.url("new-order"), map[string]any{"identifiers": ids("ari.test", "x.test"), "replaces": id}); r.status != 201 {
		t.Fatalf("another account's replaces must be ignored: %d %s", r.status, r.body)
	}
	e.post(s, e.url("new-order"), map[string]any{"identifiers": ids("ari.test", "y.test"), "replaces": id}).wantProblem(t, 409, "alreadyReplaced")
	// A certificate this CA did not issue is ignored, never malformed.
	foreign := selfSigned(t, newKey(t), "ari.test")
	r = order(b64(foreign.AuthorityKeyId) + "." + b64(foreign.SerialNumber.Bytes()))
	if r.status != 201 || strings.Contains(string(r.body), `"replaces"`) {
		t.Fatalf("foreign replaces: %d %s", r.status, r.body)
	}
}

func jsonBody(t testing.TB, b []byte, v any) {
	t.Helper()
	if err := jsonUnmarshal(b, v); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
