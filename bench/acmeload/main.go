// Command acmeload is a load generator for ACME servers: each of -c workers registers
// an account, then runs complete http-01 orders (new order → challenge → finalize →
// download) until -n orders are done; it prints orders/s and the p50 and p99 order
// latency, and, given the server's -pid (a comma-separated list for replicas), the
// server's CPU time per order and its resident memory; given -dbpid, the PostgreSQL
// postmaster, also the database's CPU time per order. It answers http-01 itself on
// -listen and polls on its own schedule (1 ms doubling to 20 ms), so it measures the
// server rather than client sleeps. It reports its own CPU time per order too: on a
// machine it shares with the server, that bounds what the server can be shown to do.
//
//	acmeload -dir https://localhost:8443/acme/acme/directory -ca root.crt -c 8 -n 2000 -pid 1234
package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	dirURL := flag.String("dir", "", "ACME directory URL")
	caFile := flag.String("ca", "", "PEM file of the root that signs the server's TLS certificate")
	conc := flag.Int("c", 8, "concurrent workers (one account each)")
	total := flag.Int("n", 1000, "orders to complete (after the warm-up)")
	warmup := flag.Int("warmup", 50, "orders to run before measuring")
	listen := flag.String("listen", "127.0.0.1:5002", "address of the http-01 responder (the server's validator connects here)")
	ident := flag.String("ident", "127.0.0.1", "identifier to order: an IP address (type ip) or a name that resolves to the responder")
	pids := flag.String("pid", "", "server process(es) to measure CPU time and memory of: PID[,PID...]")
	dbPID := flag.Int("dbpid", 0, "PostgreSQL postmaster whose CPU time, with its children's, counts as the database's")
	lbPID := flag.Int("lbpid", 0, "load balancer process whose CPU time is reported on its own")
	conns := flag.Int("conns", 1, "HTTP/2 connections, opened one after another; each worker sends its consecutive requests over them in turn")
	stall := flag.Duration("stall", 15*time.Second, "give up (exit 3) when no order completes for this long")
	label := flag.String("label", "server", "name printed with the results")
	flag.Parse()
	if *dirURL == "" {
		fmt.Fprintln(os.Stderr, "acmeload: -dir is required")
		os.Exit(2)
	}
	var serverPIDs []int
	for _, f := range strings.Split(*pids, ",") {
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p <= 0 {
			fmt.Fprintf(os.Stderr, "acmeload: -pid %q: want process IDs separated by commas\n", *pids)
			os.Exit(2)
		}
		serverPIDs = append(serverPIDs, p)
	}
	if *conns < 1 {
		fmt.Fprintln(os.Stderr, "acmeload: -conns must be at least 1")
		os.Exit(2)
	}
	procs := measured{servers: serverPIDs, db: *dbPID, lb: *lbPID}
	if err := run(*dirURL, *caFile, *listen, *ident, *label, *conc, *total, *warmup, *conns, procs, *stall); err != nil {
		fmt.Fprintln(os.Stderr, "acmeload:", err)
		os.Exit(1)
	}
}

// requests counts the requests sent to the ACME server.
var requests atomic.Int64

// tokens maps http-01 tokens to key authorizations for the responder.
var tokens sync.Map

func run(dirURL, caFile, listen, ident, label string, conc, total, warmup, conns int, procs measured, stall time.Duration) error {
	tlsConf := &tls.Config{}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return err
		}
		tlsConf.RootCAs = x509.NewCertPool()
		if !tlsConf.RootCAs.AppendCertsFromPEM(pem) {
			return fmt.Errorf("%s: no certificates", caFile)
		}
	}
	// One client per connection, each dialled before the next, so that a round-robin
	// load balancer puts consecutive connections, and so a worker's consecutive
	// requests, on different backends.
	hcs := make([]*http.Client, conns)
	for i := range hcs {
		hcs[i] = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsConf, MaxIdleConnsPerHost: conc * 2, ForceAttemptHTTP2: true,
		}}
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("http-01 responder: %w", err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v, ok := tokens.Load(strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/")); ok {
			io.WriteString(w, v.(string))
			return
		}
		http.NotFound(w, r)
	}))
	identType := "dns"
	if net.ParseIP(ident) != nil {
		identType = "ip"
	}
	var dir directory
	for _, hc := range hcs {
		if err := getJSON(hc, dirURL, &dir); err != nil {
			return fmt.Errorf("directory: %w", err)
		}
	}
	clients := make([]*client, conc)
	for i := range clients {
		c, err := newClient(hcs, i, dir)
		if err != nil {
			return fmt.Errorf("account: %w", err)
		}
		clients[i] = c
	}

	phase := func(n int) ([]time.Duration, time.Duration, error) {
		var next, done atomic.Int64
		lat := make([]time.Duration, n)
		errc := make(chan error, conc)
		start := time.Now()
		stop := make(chan struct{})
		go watchdog(&done, stall, stop)
		var wg sync.WaitGroup
		for _, c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := next.Add(1) - 1
					if i >= int64(n) {
						return
					}
					d, err := c.order(identType, ident)
					if err != nil {
						errc <- err
						return
					}
					lat[i] = d
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		close(stop)
		elapsed := time.Since(start)
		close(errc)
		return lat, elapsed, <-errc
	}
	if warmup > 0 {
		if _, _, err := phase(warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	self0 := procCPU(os.Getpid()).own
	cpu0 := procs.cpu()
	req0 := requests.Load()
	lat, elapsed, err := phase(total)
	cpu1 := procs.cpu()
	self1 := procCPU(os.Getpid()).own
	reqs := requests.Load() - req0
	if err != nil {
		return err
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	fmt.Printf("%s orders=%d concurrency=%d orders_per_s=%.1f p50_ms=%.1f p99_ms=%.1f requests_per_order=%.2f", label, total, conc,
		float64(total)/elapsed.Seconds(), pct(0.50), pct(0.99), float64(reqs)/float64(total))
	perOrder := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(total) }
	if len(procs.servers) > 0 {
		var rss, hwm float64
		for _, p := range procs.servers {
			r, h := procMem(p)
			rss, hwm = rss+r, hwm+h
		}
		fmt.Printf(" server_cpu_ms_per_order=%.2f server_rss_mb=%.1f server_peak_rss_mb=%.1f", perOrder(cpu1.server-cpu0.server), rss, hwm)
	}
	if procs.db > 0 {
		fmt.Printf(" db_cpu_ms_per_order=%.2f total_cpu_ms_per_order=%.2f", perOrder(cpu1.db-cpu0.db), perOrder(cpu1.server-cpu0.server+cpu1.db-cpu0.db))
	}
	if procs.lb > 0 {
		fmt.Printf(" lb_cpu_ms_per_order=%.2f", perOrder(cpu1.lb-cpu0.lb))
	}
	fmt.Printf(" client_cpu_ms_per_order=%.2f\n", perOrder(self1-self0))
	return nil
}

// measured names the processes whose CPU time is reported.
type measured struct {
	servers []int
	db, lb  int
}

type cpuTimes struct{ server, db, lb time.Duration }

func (m measured) cpu() cpuTimes {
	var t cpuTimes
	for _, p := range m.servers {
		t.server += procCPU(p).own
	}
	t.db = postgresCPU(m.db)
	t.lb = procCPU(m.lb).own
	return t
}

// postgresCPU is the CPU time of a PostgreSQL cluster: the postmaster's own, that of
// the backends it has reaped (cutime+cstime), and that of its live children (backends,
// WAL writer, checkpointer, autovacuum).
func postgresCPU(postmaster int) time.Duration {
	if postmaster <= 0 {
		return 0
	}
	pm := procCPU(postmaster)
	total := pm.own + pm.children
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", postmaster, postmaster))
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			total += procCPU(p).own
		}
	}
	return total
}

func watchdog(done *atomic.Int64, stall time.Duration, stop chan struct{}) {
	last, since := done.Load(), time.Now()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		if n := done.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > stall {
			fmt.Fprintf(os.Stderr, "acmeload: STALL: no order completed for %s\n", stall)
			os.Exit(3)
		}
	}
}

// procCPU is a process's user+system CPU time (own) and that of its reaped children
// (cutime+cstime) from /proc/PID/stat; zero for a process that is gone.
func procCPU(pid int) (t struct{ own, children time.Duration }) {
	if pid <= 0 {
		return t
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil || bytes.LastIndexByte(b, ')') < 0 {
		return t
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ticks := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		const clkTck = 100 // USER_HZ on Linux
		return time.Duration(v) * time.Second / clkTck
	}
	t.own, t.children = ticks(11)+ticks(12), ticks(13)+ticks(14)
	return t
}

// procMem is a process's resident and peak resident memory in MB.
func procMem(pid int) (rss, hwm float64) {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			hwm = kb / 1024
		}
	}
	return rss, hwm
}

type directory struct {
	NewNonce   string `json:"newNonce"`
	NewAccount string `json:"newAccount"`
	NewOrder   string `json:"newOrder"`
}

func getJSON(hc *http.Client, url string, v any) error {
	res, err := hc.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, res.Status)
	}
	return json.NewDecoder(res.Body).Decode(v)
}

// client is one account; a worker uses it sequentially.
type client struct {
	hcs   []*http.Client // used in turn, one request each
	sent  int
	dir   directory
	key   *ecdsa.PrivateKey
	jwk   json.RawMessage
	thumb string
	kid   string
	nonce string
}

var b64 = base64.RawURLEncoding

func newClient(hcs []*http.Client, worker int, dir directory) (*client, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	x, y := key.X.FillBytes(make([]byte, 32)), key.Y.FillBytes(make([]byte, 32))
	jwk := fmt.Sprintf(`{"crv":"P-256","kty":"EC","x":"%s","y":"%s"}`, b64.EncodeToString(x), b64.EncodeToString(y))
	sum := sha256.Sum256([]byte(jwk)) // RFC 7638: members in lexical order, no spaces
	c := &client{hcs: hcs, sent: worker, dir: dir, key: key, jwk: json.RawMessage(jwk), thumb: b64.EncodeToString(sum[:])}
	res, _, err := c.post(dir.NewAccount, map[string]any{"termsOfServiceAgreed": true})
	if err != nil {
		return nil, err
	}
	if res.StatusCode != 201 && res.StatusCode != 200 {
		return nil, fmt.Errorf("newAccount: %s", res.Status)
	}
	c.kid = res.Header.Get("Location")
	return c, nil
}

// next is the connection for the client's next request.
func (c *client) next() *http.Client {
	c.sent++
	return c.hcs[c.sent%len(c.hcs)]
}

func (c *client) getNonce() (string, error) {
	if n := c.nonce; n != "" {
		c.nonce = ""
		return n, nil
	}
	requests.Add(1)
	res, err := c.next().Head(c.dir.NewNonce)
	if err != nil {
		return "", err
	}
	res.Body.Close()
	return res.Header.Get("Replay-Nonce"), nil
}

// post signs payload (nil = POST-as-GET) with ES256 and sends it, retrying badNonce.
func (c *client) post(url string, payload any) (*http.Response, []byte, error) {
	var p []byte
	if payload != nil {
		p, _ = json.Marshal(payload)
	}
	for attempt := 0; ; attempt++ {
		nonce, err := c.getNonce()
		if err != nil {
			return nil, nil, err
		}
		hdr := map[string]any{"alg": "ES256", "nonce": nonce, "url": url}
		if c.kid != "" {
			hdr["kid"] = c.kid
		} else {
			hdr["jwk"] = c.jwk
		}
		ph, _ := json.Marshal(hdr)
		input := b64.EncodeToString(ph) + "." + b64.EncodeToString(p)
		digest := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, c.key, digest[:])
		if err != nil {
			return nil, nil, err
		}
		sig := append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
		body, _ := json.Marshal(map[string]string{"protected": b64.EncodeToString(ph), "payload": b64.EncodeToString(p), "signature": b64.EncodeToString(sig)})
		req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/jose+json")
		requests.Add(1)
		res, err := c.next().Do(req)
		if err != nil {
			return nil, nil, err
		}
		rb, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			return nil, nil, err
		}
		c.nonce = res.Header.Get("Replay-Nonce")
		if res.StatusCode == 400 && bytes.Contains(rb, []byte("badNonce")) && attempt < 5 {
			continue
		}
		if res.StatusCode >= 400 {
			return res, rb, fmt.Errorf("POST %s: %s: %s", url, res.Status, rb)
		}
		return res, rb, nil
	}
}

type order struct {
	Status         string   `json:"status"`
	Authorizations []string `json:"authorizations"`
	Finalize       string   `json:"finalize"`
	Certificate    string   `json:"certificate"`
	Error          any      `json:"error"`
}

func (c *client) getOrder(url string) (*order, error) {
	_, b, err := c.post(url, nil)
	if err != nil {
		return nil, err
	}
	var o order
	return &o, json.Unmarshal(b, &o)
}

// waitOrder polls from 1 ms, doubling to 20 ms, until the order has the status.
func (c *client) waitOrder(url, status string) (*order, error) {
	d := time.Millisecond
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		o, err := c.getOrder(url)
		if err != nil {
			return nil, err
		}
		if o.Status == status {
			return o, nil
		}
		if o.Status == "invalid" {
			return nil, fmt.Errorf("order %s is invalid: %v", url, o.Error)
		}
		time.Sleep(d)
		d = min(2*d, 20*time.Millisecond)
	}
	return nil, fmt.Errorf("order %s never became %s", url, status)
}

// order runs one complete order and returns how long it took.
func (c *client) order(identType, ident string) (time.Duration, error) {
	start := time.Now()
	res, b, err := c.post(c.dir.NewOrder, map[string]any{"identifiers": []map[string]string{{"type": identType, "value": ident}}})
	if err != nil {
		return 0, err
	}
	orderURL := res.Header.Get("Location")
	var o order
	if err := json.Unmarshal(b, &o); err != nil {
		return 0, err
	}
	var used []string
	defer func() {
		for _, t := range used {
			tokens.Delete(t)
		}
	}()
	for _, az := range o.Authorizations {
		_, b, err := c.post(az, nil)
		if err != nil {
			return 0, err
		}
		var a struct {
			Status     string
			Challenges []struct{ Type, URL, Token string }
		}
		if err := json.Unmarshal(b, &a); err != nil {
			return 0, err
		}
		if a.Status == "valid" {
			continue
		}
		for _, ch := range a.Challenges {
			if ch.Type != "http-01" {
				continue
			}
			tokens.Store(ch.Token, ch.Token+"."+c.thumb)
			used = append(used, ch.Token)
			if _, _, err := c.post(ch.URL, map[string]any{}); err != nil {
				return 0, err
			}
		}
	}
	if _, err := c.waitOrder(orderURL, "ready"); err != nil {
		return 0, err
	}
	csr, err := newCSR(identType, ident)
	if err != nil {
		return 0, err
	}
	_, b, err = c.post(o.Finalize, map[string]string{"csr": b64.EncodeToString(csr)})
	if err != nil {
		return 0, err
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return 0, err
	}
	if o.Status != "valid" {
		done, err := c.waitOrder(orderURL, "valid")
		if err != nil {
			return 0, err
		}
		o = *done
	}
	if o.Certificate == "" {
		return 0, errors.New("a valid order without a certificate URL")
	}
	if _, _, err := c.post(o.Certificate, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func newCSR(identType, ident string) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{Subject: pkix.Name{CommonName: ident}}
	if identType == "ip" {
		tmpl.IPAddresses = []net.IP{net.ParseIP(ident)}
	} else {
		tmpl.DNSNames = []string{ident}
	}
	return x509.CreateCertificateRequest(rand.Reader, tmpl, key)
}
