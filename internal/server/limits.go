package server

import (
	"crypto/tls"
	"io"
	"net/http"
	"time"
)

// Limits on slow clients. A request's headers must arrive within headerTimeout; its
// body must keep arriving — each read within bodyIdle, and on average at least
// bodyMinRate bytes a second after a grace period — so a body trickled a byte at a
// time is cut off while a large honest upload keeps its connection; the response must
// be written within writeTimeout of the body's end.
type Limits struct {
	HeaderTimeout time.Duration
	BodyIdle      time.Duration
	BodyGrace     time.Duration
	BodyMinRate   int64 // bytes per second
	WriteTimeout  time.Duration
	IdleTimeout   time.Duration
}

// DefaultLimits are the listeners' limits.
var DefaultLimits = Limits{
	HeaderTimeout: 10 * time.Second,
	BodyIdle:      10 * time.Second,
	BodyGrace:     10 * time.Second,
	BodyMinRate:   1024,
	WriteTimeout:  60 * time.Second,
	IdleTimeout:   2 * time.Minute,
}

// tlsSuites are the TLS 1.2 cipher suites offered: ECDHE with AEAD only (TLS 1.3
// suites are all AEAD and not configurable).
var tlsSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// hsts asks browsers to use HTTPS for a year: clients of the HTTPS API never need plain HTTP to it.
const hsts = "max-age=31536000"

// httpServer is an http.Server with the limits: connection-level header and idle
// timeouts, and per-request body and write deadlines set by the handler wrapper.
func (l Limits) httpServer(h http.Handler) *http.Server {
	return &http.Server{Handler: l.wrap(h), ReadHeaderTimeout: l.HeaderTimeout, IdleTimeout: l.IdleTimeout}
}

// wrap sets the request's read deadline as its body arrives and its write deadline
// from the end of the body.
func (l Limits) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		start := time.Now()
		rc.SetWriteDeadline(start.Add(l.BodyGrace + l.WriteTimeout))
		if r.Body != nil && r.Body != http.NoBody {
			b := &deadlineBody{ReadCloser: r.Body, rc: rc, l: l, start: start}
			b.extend()
			r.Body = b
		}
		h.ServeHTTP(w, r)
	})
}

// deadlineBody moves the connection's read deadline before each read.
type deadlineBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	l     Limits
	start time.Time
	n     int64
	done  bool
}

// extend sets the read deadline to the earlier of the idle limit and the time by which
// the bytes read so far, plus the next, are due at the minimum rate.
func (b *deadlineBody) extend() {
	now := time.Now()
	due := b.start.Add(b.l.BodyGrace + time.Duration(b.n)*time.Second/time.Duration(max(b.l.BodyMinRate, 1)))
	if idle := now.Add(b.l.BodyIdle); idle.Before(due) {
		due = idle
	}
	b.rc.SetReadDeadline(due)
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	if b.done {
		return b.ReadCloser.Read(p)
	}
	b.extend()
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err != nil {
		// The body is in (or failed): the handler has WriteTimeout to answer. After a
		// whole body the read deadline goes, lest the server's background read of the
		// idle connection time out and cancel the request while the handler works;
		// after a failure it stays, bounding the server's discard of the rest.
		b.done = true
		if err == io.EOF {
			b.rc.SetReadDeadline(time.Time{})
		}
		b.rc.SetWriteDeadline(time.Now().Add(b.l.WriteTimeout))
	}
	return n, err
}

// withHSTS adds Strict-Transport-Security to every response.
func withHSTS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", hsts)
		h.ServeHTTP(w, r)
	})
}
