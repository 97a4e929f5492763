// Package server runs nixpki's network face: the HTTPS listener (with a certificate
// its own TLS intermediate issues and renews) for the CA's API and the ACME
// directories, and a plain-HTTP listener for what relying parties fetch without TLS
// (CRLs, OCSP, CA certificates — signed objects, RFC 5280 and 6960 practice).
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"nixpki/internal/ca"
)

// Server serves one CA.
type Server struct {
	CA  *ca.CA
	Log *slog.Logger
	// Mounts are extra routes on the HTTPS side (pattern → handler), e.g. the ACME
	// server at "/acme/".
	Mounts map[string]http.Handler
	// Wrap, if set, wraps both listeners' handlers (request metrics).
	Wrap func(http.Handler) http.Handler
	// Limits on slow clients; zero means DefaultLimits.
	Limits Limits
	certs  *certManager
}

// Addrs are the addresses the server actually listens on.
type Addrs struct {
	HTTPS, HTTP net.Addr
}

// Run listens on listen (HTTPS) and httpListen (plain HTTP, skipped if empty) until
// ctx ends, then shuts down gracefully. ready is called once both listen.
func (s *Server) Run(ctx context.Context, listen, httpListen string, ready func(Addrs)) error {
	s.certs = &certManager{ca: s.CA, log: s.Log}
	if err := s.certs.start(ctx); err != nil {
		return fmt.Errorf("issuing the server's own TLS certificate: %w", err)
	}
	go s.certs.loop(ctx)

	tlsConf := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   tlsSuites,
		GetCertificate: s.certs.get,
		NextProtos:     []string{"h2", "http/1.1"},
	}
	lim := s.Limits
	if lim == (Limits{}) {
		lim = DefaultLimits
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}
	https := lim.httpServer(withHSTS(s.wrap(s.HTTPSHandler())))
	https.TLSConfig, https.ErrorLog = tlsConf, slog.NewLogLogger(s.Log.Handler(), slog.LevelDebug)
	servers := []*http.Server{https}
	lns := []net.Listener{tls.NewListener(ln, tlsConf)}
	addrs := Addrs{HTTPS: ln.Addr()}
	if httpListen != "" {
		hl, err := net.Listen("tcp", httpListen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("--http-listen %s: %w", httpListen, err)
		}
		servers = append(servers, lim.httpServer(s.wrap(s.HTTPHandler())))
		lns = append(lns, hl)
		addrs.HTTP = hl.Addr()
	}
	errc := make(chan error, len(servers))
	for i := range servers {
		go func() { errc <- servers[i].Serve(lns[i]) }()
	}
	if ready != nil {
		ready(addrs)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			for _, srv := range servers {
				srv.Close()
			}
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	return nil
}

// CurrentCertificate returns the server's TLS certificate now in use.
func (s *Server) CurrentCertificate() *tls.Certificate { return s.certs.current() }

func (s *Server) wrap(h http.Handler) http.Handler {
	if s.Wrap == nil {
		return h
	}
	return s.Wrap(h)
}
