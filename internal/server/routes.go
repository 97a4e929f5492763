package server

import (
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"nixpki/internal/ca"
	"nixpki/internal/problem"
	"nixpki/internal/x509util"
)

// maxOCSPRequest bounds OCSP request bodies; real requests are a few hundred bytes.
const maxOCSPRequest = 16 << 10

// publicRoutes are served on both listeners: what relying parties fetch.
func (s *Server) publicRoutes(mux *http.ServeMux) {
	h := func(f problem.HandlerFunc) http.Handler { return problem.Handler(s.Log, f) }
	mux.Handle("GET /roots.pem", h(s.roots))
	mux.Handle("GET /intermediates.pem", h(s.intermediates))
	mux.Handle("GET /certs/{name}", h(s.caCert))
	mux.Handle("GET /crl/{name}", h(s.crl))
	mux.Handle("POST /ocsp", h(s.ocspPost))
	mux.Handle("GET /ocsp/{req...}", h(s.ocspGet))
	mux.Handle("GET /health", h(s.health))
}

// HTTPHandler is the plain-HTTP side.
func (s *Server) HTTPHandler() http.Handler {
	mux := http.NewServeMux()
	s.publicRoutes(mux)
	return mux
}

// HTTPSHandler is the HTTPS side: the public routes and every mount.
func (s *Server) HTTPSHandler() http.Handler {
	mux := http.NewServeMux()
	s.publicRoutes(mux)
	for pattern, h := range s.Mounts {
		mux.Handle(pattern, h)
	}
	return mux
}

func (s *Server) roots(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(s.CA.RootPEM())
	return err
}

func (s *Server) intermediates(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/x-pem-file")
	_, err := w.Write(x509util.ChainPEM(s.CA.TLS.Cert, s.CA.Nix.Cert))
	return err
}

// caCert serves root.crt, tls.crt and nix.crt as DER (RFC 5280 4.2.2.1 caIssuers).
func (s *Server) caCert(w http.ResponseWriter, r *http.Request) error {
	name := strings.TrimSuffix(r.PathValue("name"), ".crt")
	var der []byte
	switch name {
	case ca.IssuerRoot:
		der = s.CA.Root.Raw
	case ca.IssuerTLS, ca.IssuerNix:
		iss, _ := s.CA.Issuer(name)
		der = iss.Cert.Raw
	default:
		return problem.NotFound("no CA certificate %q: try root.crt, tls.crt or nix.crt", r.PathValue("name"))
	}
	w.Header().Set("Content-Type", "application/pkix-cert")
	_, err := w.Write(der)
	return err
}

func (s *Server) crl(w http.ResponseWriter, r *http.Request) error {
	name, ok := strings.CutSuffix(r.PathValue("name"), ".crl")
	if !ok || (name != ca.IssuerTLS && name != ca.IssuerNix) {
		return problem.NotFound("no CRL %q: try tls.crl or nix.crl", r.PathValue("name"))
	}
	der, err := s.CA.CRL(r.Context(), name)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "no-cache")
	_, err = w.Write(der)
	return err
}

func (s *Server) ocspPost(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOCSPRequest))
	if err != nil {
		return problem.New(http.StatusRequestEntityTooLarge, "", "OCSP request larger than %d bytes", maxOCSPRequest)
	}
	return s.answerOCSP(w, r, body)
}

// ocspGet takes the base64 request from the path (RFC 6960 A.1), URL-encoded or not.
func (s *Server) ocspGet(w http.ResponseWriter, r *http.Request) error {
	raw := r.PathValue("req")
	if u, err := url.PathUnescape(raw); err == nil {
		raw = u
	}
	der, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return problem.BadRequest("OCSP GET: the path is not a base64 request: %v", err)
	}
	return s.answerOCSP(w, r, der)
}

func (s *Server) answerOCSP(w http.ResponseWriter, r *http.Request, der []byte) error {
	resp, err := s.CA.OCSP(r.Context(), der)
	if err != nil {
		s.Log.Error("ocsp", "err", err)
	}
	w.Header().Set("Content-Type", "application/ocsp-response")
	_, err = w.Write(resp)
	return err
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	if err := s.CA.DB.Ping(r.Context()); err != nil {
		return &problem.Problem{Status: http.StatusServiceUnavailable, Detail: "database unavailable", Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	_, err := fmt.Fprintln(w, `{"status":"ok"}`)
	return err
}
