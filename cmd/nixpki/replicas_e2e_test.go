package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	xacme "golang.org/x/crypto/acme"
	"golang.org/x/crypto/ocsp"

	"nixpki/internal/testutil"
	"nixpki/internal/x509util"
)

func TestMain(m *testing.M) { testutil.ExitWithPostgres(m) }

// pgRoles makes, for the test's schema, an owner role (DDL: `db migrate`, `db copy`),
// and an application role with DML rights only (serve), and returns their URLs.
func pgRoles(t *testing.T) (owner, app string, admin *sql.DB, schema string) {
	t.Helper()
	dsn, admin := testutil.Postgres(t)
	u, _ := url.Parse(dsn)
	schema = u.Query().Get("search_path")
	for _, q := range []string{
		`CREATE ROLE %[1]s_owner LOGIN`, `GRANT USAGE, CREATE ON SCHEMA %[1]s TO %[1]s_owner`,
		`CREATE ROLE %[1]s_app LOGIN`, `GRANT USAGE ON SCHEMA %[1]s TO %[1]s_app`,
		`ALTER DEFAULT PRIVILEGES FOR ROLE %[1]s_owner IN SCHEMA %[1]s GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %[1]s_app`,
		`ALTER DEFAULT PRIVILEGES FOR ROLE %[1]s_owner IN SCHEMA %[1]s GRANT USAGE, SELECT ON SEQUENCES TO %[1]s_app`,
	} {
		if _, err := admin.Exec(fmt.Sprintf(q, schema)); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	role := func(name, password string) string {
		r := *u
		r.User = url.User(name)
		if password != "" {
			r.User = url.UserPassword(name, password)
		}
		return r.String()
	}
	return role(schema+"_owner", ""), role(schema+"_app", "never-logged-pw"), admin, schema
}

// replica is one `nixpki serve` process.
type replica struct {
	cmd            *exec.Cmd
	https, http    string
	stderr, stdout *testutil.Buffer
}

var listeningOn = regexp.MustCompile(`HTTPS: \S+ \(listening on (\S+)\)`)

// startReplica runs serve on an HTTPS port of its choosing, advertising the proxy's
// address (externalHTTPS) in ACME URLs, and waits for its banner.
func startReplica(t *testing.T, dir, dbURL, acmeHTTPPort, externalHTTPS string) *replica {
	t.Helper()
	r := &replica{http: testutil.FreePort(t), stderr: &testutil.Buffer{}, stdout: &testutil.Buffer{}}
	r.cmd = exec.Command(nixpkiBin(t), "serve", "--dir", dir, "--listen", "127.0.0.1:0", "--http-listen", r.http,
		"--database-url", dbURL, "--acme-http-port", acmeHTTPPort, "--external-https-url", externalHTTPS)
	r.cmd.Stdout, r.cmd.Stderr = r.stdout, r.stderr
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.cmd.Process.Signal(os.Interrupt); r.cmd.Wait() })
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if m := listeningOn.FindStringSubmatch(r.stdout.String()); m != nil {
			r.https = m[1]
			return r
		}
		if r.cmd.ProcessState != nil {
			break
		}
	}
	t.Fatalf("serve did not start:\n%s\n%s", r.stdout, r.stderr)
	return nil
}

// roundRobin is a TCP proxy that sends each new connection to the next backend
// (skipping one that refuses), as a load balancer without stickiness does.
// Its backends are set once they listen.
func roundRobin(t *testing.T) (addr string, setBackends func(...string)) {
	t.Helper()
	var backendsV atomic.Value
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var next atomic.Int64
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				backends, _ := backendsV.Load().([]string)
				var b net.Conn
				for i := 0; i < len(backends) && b == nil; i++ {
					b, _ = net.DialTimeout("tcp", backends[int(next.Add(1))%len(backends)], 2*time.Second)
				}
				if b == nil {
					return
				}
				defer b.Close()
				go func() { io.Copy(b, c); b.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, b)
			}()
		}
	}()
	return l.Addr().String(), func(b ...string) { backendsV.Store(b) }
}

// TestPostgresReplicas runs two `nixpki serve` replicas on one PostgreSQL database
// behind a round-robin proxy: serve refuses an unmigrated database, `db migrate` and
// `db copy` prepare it, the replicas run with DML rights only, lego and x/crypto/acme
// clients complete orders whose requests alternate between replicas (nonces from one
// spent on the other), a revocation shows in both replicas' OCSP and CRL at once, one
// replica is killed (SIGKILL) under load and the clients finish on the other; every
// certificate a client received is in the database, no serial twice. A replica on a
// read-only role (as on a standby) serves reads and answers writes with 503.
func TestPostgresReplicas(t *testing.T) {
	legoBin := testutil.NeedTool(t, "lego")
	owner, app, admin, schema := pgRoles(t)
	tmp := t.TempDir()
	dirA, dirB := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	run(t, false, "init", "--dir", dirA, "--name", "HA", "--ip", "127.0.0.1", "--external-url", "http://127.0.0.1:1")

	// An unmigrated database: serve refuses and names the command to run.
	if out := run(t, true, "serve", "--dir", dirA, "--database-url", app, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0"); !strings.Contains(out, "nixpki db migrate") {
		t.Fatalf("serve on an unmigrated database:\n%s", out)
	}
	// The application role cannot create tables; the owner can.
	run(t, true, "db", "migrate", "--dir", dirA, "--database-url", app)
	if out := run(t, false, "db", "migrate", "--dir", dirA, "--database-url", owner); !strings.Contains(out, "schema version 0 ->") {
		t.Fatalf("db migrate:\n%s", out)
	}
	if out := run(t, false, "db", "copy", "--from", dirA, "--to", owner); !strings.Contains(out, "certificates     3") || !strings.Contains(out, "counts verified") {
		t.Fatalf("db copy:\n%s", out)
	}
	if out, err := exec.Command("cp", "-a", dirA, dirB).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}

	// http-01 answers: x/crypto/acme's tokens from memory, lego's from its webroot.
	webroot := t.TempDir()
	var tokens sync.Map
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	go http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")
		if v, ok := tokens.Load(tok); ok {
			io.WriteString(w, v.(string))
			return
		}
		http.ServeFile(w, r, filepath.Join(webroot, ".well-known", "acme-challenge", filepath.Base(tok)))
	}))
	_, httpPort, _ := net.SplitHostPort(hl.Addr().String())

	proxy, setBackends := roundRobin(t)
	a := startReplica(t, dirA, app, httpPort, "https://"+proxy)
	b := startReplica(t, dirB, app, httpPort, "https://"+proxy)
	setBackends(a.https, b.https)
	directory := "https://" + proxy + "/acme/acme/directory"
	rootPEM, _ := os.ReadFile(filepath.Join(dirA, "root.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootPEM)

	// lego, the client NixOS uses.
	legoDir := t.TempDir()
	lego := exec.Command(legoBin, "--server", directory, "--accept-tos", "--email", "ops@example.com", "--path", legoDir,
		"--domains", "127.0.0.1", "--http", "--http.webroot", webroot, "run")
	lego.Env = append(os.Environ(), "LEGO_CA_CERTIFICATES="+filepath.Join(dirA, "root.crt"))
	if out, err := lego.CombinedOutput(); err != nil {
		t.Fatalf("lego through the proxy: %v\n%s", err, out)
	}
	var received []string // serials clients were given
	var mu sync.Mutex
	legoCert, err := os.ReadFile(filepath.Join(legoDir, "certificates", "127.0.0.1.crt"))
	if err != nil {
		t.Fatal(err)
	}
	received = append(received, serialOfPEM(t, legoCert))

	// x/crypto/acme clients, a new connection (so, replica) for every request.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{RootCAs: pool}}}
	newClient := func() *xacme.Client {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		cl := &xacme.Client{Key: key, DirectoryURL: directory, HTTPClient: hc}
		if _, err := cl.Register(context.Background(), &xacme.Account{}, xacme.AcceptTOS); err != nil {
			t.Fatal(err)
		}
		return cl
	}
	order := func(cl *xacme.Client) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		o, err := cl.AuthorizeOrder(ctx, []xacme.AuthzID{{Type: "ip", Value: "127.0.0.1"}})
		if err != nil {
			return "", err
		}
		for _, u := range o.AuthzURLs {
			z, err := cl.GetAuthorization(ctx, u)
			if err != nil {
				return "", err
			}
			if z.Status == xacme.StatusValid {
				continue
			}
			for _, ch := range z.Challenges {
				if ch.Type != "http-01" {
					continue
				}
				v, _ := cl.HTTP01ChallengeResponse(ch.Token)
				tokens.Store(ch.Token, v)
				if _, err := cl.Accept(ctx, ch); err != nil {
					return "", err
				}
			}
		}
		if o, err = cl.WaitOrder(ctx, o.URI); err != nil {
			return "", err
		}
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, key)
		chain, _, err := cl.CreateOrderCert(ctx, o.FinalizeURL, csr, true)
		if err != nil {
			return "", err
		}
		c, err := x509.ParseCertificate(chain[0])
		if err != nil {
			return "", err
		}
		return x509util.SerialHex(c.SerialNumber), nil
	}

	// A revocation through one replica is in both replicas' OCSP answers and CRLs.
	cl := newClient()
	serial, err := order(cl)
	if err != nil {
		t.Fatal(err)
	}
	received = append(received, serial)
	leafDER := certDER(t, admin, schema, serial)
	if err := cl.RevokeCert(context.Background(), nil, leafDER, xacme.CRLReasonKeyCompromise); err != nil {
		t.Fatal(err)
	}
	interPEM, _ := os.ReadFile(filepath.Join(dirA, "tls-intermediate.crt"))
	inter := parsePEMCert(t, interPEM)
	leaf, _ := x509.ParseCertificate(leafDER)
	var crlNumbers []int64
	for _, r := range []*replica{a, b} {
		if st := ocspStatus(t, r.http, leaf, inter); st != ocsp.Revoked {
			t.Fatalf("replica %s OCSP status %d right after the revocation, want revoked", r.http, st)
		}
		crl := fetchReplicaCRL(t, r.http, inter)
		found := false
		for _, e := range crl.RevokedCertificateEntries {
			found = found || x509util.SerialHex(e.SerialNumber) == serial
		}
		if !found {
			t.Fatalf("replica %s CRL lacks the revoked %s", r.http, serial)
		}
		crlNumbers = append(crlNumbers, crl.Number.Int64())
	}
	if crlNumbers[1] < crlNumbers[0] {
		t.Fatalf("CRL numbers went back across replicas: %v", crlNumbers)
	}

	// Load on both replicas; one is killed partway; clients retry an interrupted
	// order from the start and finish on the other.
	const workers, perWorker = 6, 5
	var done atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			cl := &xacme.Client{Key: key, DirectoryURL: directory, HTTPClient: hc}
			// A request cut off by the replica's death is tried again from the
			// start, on a new connection, as a client behind a load balancer would.
			retry := func(f func() error) (err error) {
				for try := 0; try < 10; try++ {
					if err = f(); err == nil {
						return nil
					}
					hc.CloseIdleConnections()
					time.Sleep(300 * time.Millisecond)
				}
				return err
			}
			if err := retry(func() error {
				_, err := cl.Register(context.Background(), &xacme.Account{}, xacme.AcceptTOS)
				if errors.Is(err, xacme.ErrAccountAlreadyExists) {
					return nil // registered before the cut
				}
				return err
			}); err != nil {
				errc <- err
				return
			}
			for i := 0; i < perWorker; i++ {
				if err := retry(func() error {
					s, err := order(cl)
					if err == nil {
						mu.Lock()
						received = append(received, s)
						mu.Unlock()
						done.Add(1)
					}
					return err
				}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	for deadline := time.Now().Add(2 * time.Minute); done.Load() < workers*perWorker/3 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("an ACME client did not finish after a replica died (a %s, b %s, proxy %s): %v", a.https, b.https, proxy, err)
	}

	// Every certificate a client holds is recorded, and no serial twice.
	seen := map[string]bool{}
	for _, s := range received {
		if seen[s] {
			t.Fatalf("serial %s given twice", s)
		}
		seen[s] = true
		certDER(t, admin, schema, s)
	}
	if len(seen) != 2+workers*perWorker {
		t.Fatalf("%d certificates received, want %d", len(seen), 2+workers*perWorker)
	}

	// The application role's password reached no log.
	for _, r := range []*replica{a, b} {
		if strings.Contains(r.stderr.String(), "never-logged-pw") || strings.Contains(r.stdout.String(), "never-logged-pw") {
			t.Fatal("a replica logged the database password")
		}
	}

	// A replica on a hot standby (streaming replication) serves reads and refuses
	// writes with 503.
	standby, _ := url.Parse(app)
	q := standby.Query()
	q.Set("host", testutil.PostgresStandby(t))
	standby.RawQuery = q.Encode()
	c := startReplica(t, dirB, standby.String(), httpPort, "")
	if st := ocspStatus(t, c.http, leaf, inter); st != ocsp.Revoked {
		t.Fatalf("read-only replica OCSP status %d, want revoked", st)
	}
	fetchReplicaCRL(t, c.http, inter)
	rec := &recordingTransport{rt: hc.Transport}
	dc := &xacme.Client{Key: mustKey(), DirectoryURL: "https://" + c.https + "/acme/acme/directory", HTTPClient: &http.Client{Transport: rec}}
	if _, err := dc.Discover(context.Background()); err != nil {
		t.Fatalf("read-only replica directory: %v", err)
	}
	// x/crypto/acme retries a 503 until its context ends; the answer is recorded.
	rctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	dc.Register(rctx, &xacme.Account{}, xacme.AcceptTOS)
	if st, body := rec.last(); st != http.StatusServiceUnavailable || !strings.Contains(body, "read-only") {
		t.Fatalf("new account on a read-only replica: %d %s, want 503 naming the read-only database", st, body)
	}
}

// recordingTransport keeps the status and body of the last POST answered.
type recordingTransport struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	status int
	body   string
}

func (r *recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err != nil || req.Method != http.MethodPost {
		return resp, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(b))
	r.mu.Lock()
	r.status, r.body = resp.StatusCode, string(b)
	r.mu.Unlock()
	return resp, nil
}

func (r *recordingTransport) last() (int, string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status, r.body
}

func mustKey() crypto.Signer {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	return k
}

func certDER(t *testing.T, admin *sql.DB, schema, serial string) []byte {
	t.Helper()
	var der []byte
	if err := admin.QueryRow(`SELECT der FROM `+schema+`.certificates WHERE serial = $1`, serial).Scan(&der); err != nil {
		t.Fatalf("certificate %s a client received is not in the database: %v", serial, err)
	}
	return der
}

func serialOfPEM(t *testing.T, b []byte) string {
	return x509util.SerialHex(parsePEMCert(t, b).SerialNumber)
}

func parsePEMCert(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	certs, err := x509util.ParseCertsPEM(b)
	if err != nil || len(certs) == 0 {
		t.Fatalf("PEM: %v", err)
	}
	return certs[0]
}

func ocspStatus(t *testing.T, httpAddr string, leaf, issuer *x509.Certificate) int {
	t.Helper()
	req, err := ocsp.CreateRequest(leaf, issuer, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+httpAddr+"/ocsp", "application/ocsp-request", bytes.NewReader(req))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r, err := ocsp.ParseResponseForCert(body, leaf, issuer)
	if err != nil {
		t.Fatalf("OCSP from %s: %v", httpAddr, err)
	}
	return r.Status
}

func fetchReplicaCRL(t *testing.T, httpAddr string, issuer *x509.Certificate) *x509.RevocationList {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/crl/tls.crl")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("CRL from %s: %s %s", httpAddr, resp.Status, body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(issuer); err != nil {
		t.Fatal(err)
	}
	return crl
}
