package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startServer runs the server with short limits and an echo mount that reads the
// whole body; it returns the HTTPS and HTTP addresses and a client trusting the CA.
func startServer(t *testing.T, lim Limits) (Addrs, *tls.Config) {
	t.Helper()
	c := newCA(t, "p256")
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		fmt.Fprint(w, len(b))
	})
	srv := &Server{CA: c, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Limits: lim, Mounts: map[string]http.Handler{"POST /echo": echo}}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan Addrs, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, "127.0.0.1:0", "127.0.0.1:0", func(a Addrs) { ready <- a }) }()
	t.Cleanup(func() { cancel(); <-done })
	var a Addrs
	select {
	case a = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(30 * time.Second):
		t.Fatal("server did not start")
	}
	pool := x509.NewCertPool()
	pool.AddCert(c.Root)
	return a, &tls.Config{RootCAs: pool, ServerName: "localhost"}
}

var testLimits = Limits{HeaderTimeout: 2 * time.Second, BodyIdle: time.Second, BodyGrace: time.Second, BodyMinRate: 1024, WriteTimeout: 5 * time.Second, IdleTimeout: 10 * time.Second}

// trickle sends a POST whose 1000-byte body comes a byte every gap, and reports how
// long until the server answered or hung up, and its status (0 when it hung up).
func trickle(t *testing.T, conn net.Conn, path string, gap time.Duration) (time.Duration, int) {
	t.Helper()
	defer conn.Close()
	start := time.Now()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ocsp-request\r\nContent-Length: 1000\r\n\r\n", path)
	status := make(chan int, 1)
	go func() {
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			status <- 0
			return
		}
		status <- res.StatusCode
	}()
	for i := 0; i < 1000; i++ {
		select {
		case s := <-status:
			return time.Since(start), s
		case <-time.After(gap):
		}
		if _, err := conn.Write([]byte{'x'}); err != nil {
			break
		}
	}
	select {
	case s := <-status:
		return time.Since(start), s
	case <-time.After(10 * time.Second):
		t.Fatal("the trickled request was never cut off")
	}
	return 0, 0
}

// With the default limits (those of `serve`), a body trickled a byte every 5 s is
// cut off after about 10 s.
func TestSlowBodyCutOffByDefault(t *testing.T) {
	t.Parallel()
	a, _ := startServer(t, Limits{})
	conn, err := net.Dial("tcp", a.HTTP.String())
	if err != nil {
		t.Fatal(err)
	}
	took, status := trickle(t, conn, "/ocsp", 5*time.Second)
	if took > 16*time.Second || status == http.StatusOK {
		t.Fatalf("a byte every 5 s held the request %s (status %d)", took, status)
	}
}

// A body trickled a byte at a time is cut off on both listeners, even though each
// byte comes sooner than the idle limit; a large body sent steadily for longer than
// the grace and idle limits together is read whole.
func TestSlowBodyCutOff(t *testing.T) {
	t.Parallel()
	a, tc := startServer(t, testLimits)
	for name, dial := range map[string]func() (net.Conn, error){
		"https": func() (net.Conn, error) { return tls.Dial("tcp", a.HTTPS.String(), tc) },
		"http":  func() (net.Conn, error) { return net.Dial("tcp", a.HTTP.String()) },
	} {
		conn, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		path := map[string]string{"https": "/echo", "http": "/ocsp"}[name]
		took, status := trickle(t, conn, path, 300*time.Millisecond)
		if took > 4*time.Second || status == http.StatusOK {
			t.Fatalf("%s: a byte every 300ms held the request %s (status %d)", name, took, status)
		}
	}

	// 4 MiB in 64 KiB pieces every 50 ms: about 3.2 s, well above the minimum rate.
	body := &pacedReader{left: 4 << 20, piece: 64 << 10, gap: 50 * time.Millisecond}
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	res, err := cl.Post("https://"+a.HTTPS.String()+"/echo", "application/octet-stream", body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(got) != strconv.Itoa(4<<20) {
		t.Fatalf("large steady upload: %d %s", res.StatusCode, got)
	}
	if res.Header.Get("Strict-Transport-Security") == "" {
		t.Error("no HSTS header on the HTTPS API")
	}
}

type pacedReader struct {
	left, piece int
	gap         time.Duration
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if p.left == 0 {
		return 0, io.EOF
	}
	time.Sleep(p.gap)
	n := min(len(b), p.piece, p.left)
	copy(b[:n], bytes.Repeat([]byte{'y'}, n))
	p.left -= n
	return n, nil
}

// TLS 1.2 offers only ECDHE suites with AEAD: a client offering CBC suites only is
// refused; TLS 1.3 and TLS 1.2 with GCM work.
func TestTLSSuites(t *testing.T) {
	t.Parallel()
	a, tc := startServer(t, testLimits)
	try := func(max uint16, suites ...uint16) error {
		c := tc.Clone()
		c.MaxVersion, c.CipherSuites = max, suites
		conn, err := tls.Dial("tcp", a.HTTPS.String(), c)
		if err == nil {
			conn.Close()
		}
		return err
	}
	if err := try(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256); err == nil || !strings.Contains(err.Error(), "handshake failure") {
		t.Fatalf("TLS 1.2 with CBC suites: %v", err)
	}
	if err := try(tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256); err != nil {
		t.Fatalf("TLS 1.2 with GCM: %v", err)
	}
	if err := try(tls.VersionTLS13); err != nil {
		t.Fatalf("TLS 1.3: %v", err)
	}
}
