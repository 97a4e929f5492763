package gate

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/gate/tlscert"
	"nixpki/internal/nix/base32"
	"nixpki/internal/nix/binarycache"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/problem"
)

// Handler serves the Nix binary-cache protocol and the gate's own endpoints:
//
//	GET|HEAD /nix-cache-info          cache parameters
//	GET|HEAD /<hash>.narinfo          admitted paths only (404 otherwise, as Nix expects)
//	GET|HEAD /nar/<file>              NARs of admitted paths (HEAD: any NAR held, so uploaders skip it)
//	PUT      /nar/<file>              NAR upload (none, xz, zstd, bzip2)
//	PUT      /<hash>.narinfo          narinfo upload: 200 admitted, 403 pending, 4xx rejected
//	PUT      /nixpki/certs            PEM: certificate chains and X509 CRL blocks
//	PUT      /nixpki/crl              one CRL, DER or PEM
//	POST     /nixpki/status           store paths, one a line → one status line each
//	GET      /nixpki/log/head         the log's newest signed tree head (JSON)
//
// Errors are one line of text/plain (Nix prints short bodies of failed uploads).
func (g *Gate) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /nix-cache-info", g.h(g.getCacheInfo))
	mux.Handle("GET /{file}", g.h(g.getNarInfo))
	mux.Handle("PUT /{file}", g.h(g.putNarInfo))
	mux.Handle("GET /nar/{file}", g.h(g.getNAR))
	mux.Handle("PUT /nar/{file}", g.h(g.putNAR))
	mux.Handle("PUT /nixpki/certs", g.h(g.upload(maxCertsBody, "certificate upload", g.Upload)))
	mux.Handle("PUT /nixpki/crl", g.h(g.upload(maxCRLBody, "CRL", g.AddCRL)))
	mux.Handle("POST /nixpki/status", g.h(g.postStatus))
	mux.Handle("GET /nixpki/log/head", g.h(g.getLogHead))
	mux.Handle("/", g.h(func(w http.ResponseWriter, r *http.Request) error {
		return problem.NotFound("%s %s: no such resource on this gate", r.Method, r.URL.Path)
	}))
	return mux
}

// h adapts a handler returning an error; this is the one place errors are written.
func (g *Gate) h(f func(http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		err := f(w, r)
		g.Log.Debug("request", "method", r.Method, "path", r.URL.Path, "took", time.Since(start), "err", err)
		if err == nil {
			return
		}
		p := problem.From(err)
		if rj := (*rejected)(nil); errors.As(err, &rj) {
			p = problem.New(rejectionStatus(rj.why), "", "%s", rj.msg)
		}
		if p.Status >= 500 {
			g.Log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(p.Status)
		io.WriteString(w, oneLine(p.Detail)+"\n")
	})
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func remote(r *http.Request) string { return r.RemoteAddr }

func (g *Gate) getCacheInfo(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/x-nix-cache-info")
	fmt.Fprintf(w, "StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n", g.Cfg.StoreDir, g.Cfg.Priority)
	return nil
}

// narinfoHash returns the hash part of "<hash>.narinfo".
func narinfoHash(file string) (string, bool) {
	hash, ok := strings.CutSuffix(file, ".narinfo")
	if !ok || len(hash) != storepath.HashLen {
		return "", false
	}
	if _, err := base32.Decode(hash); err != nil {
		return "", false
	}
	return hash, true
}

func (g *Gate) getNarInfo(w http.ResponseWriter, r *http.Request) error {
	hash, ok := narinfoHash(r.PathValue("file"))
	if !ok {
		return problem.NotFound("%s: no such file", r.URL.Path)
	}
	served, ok, err := g.db.served(r.Context(), hash)
	if err != nil {
		return err
	}
	if !ok {
		return problem.NotFound("%s.narinfo: not admitted", hash)
	}
	w.Header().Set("Content-Type", "text/x-nix-narinfo")
	io.WriteString(w, served)
	return nil
}

func (g *Gate) putNarInfo(w http.ResponseWriter, r *http.Request) error {
	file := r.PathValue("file")
	if file == "nix-cache-info" {
		return problem.New(http.StatusForbidden, "", "the gate's nix-cache-info is fixed")
	}
	hash, ok := narinfoHash(file)
	if !ok {
		return problem.NotFound("PUT %s: the gate takes NARs (nar/…), narinfos (<hash>.narinfo) and /nixpki/ uploads", r.URL.Path)
	}
	body, err := g.readBody(w, r, narinfo.MaxSize, file+": narinfo")
	if err != nil {
		return err
	}
	v, err := g.PutNarInfo(r.Context(), hash, body, remote(r))
	if err != nil {
		return err
	}
	g.noteVerdict(v, remote(r))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(verdictStatus(v))
	io.WriteString(w, oneLine(v.Message)+"\n")
	return nil
}

// rejectionStatus is the HTTP status of a refusal.
func rejectionStatus(why Rejection) int {
	switch why {
	case Unsigned, CannotSign:
		return http.StatusForbidden
	case Conflict:
		return http.StatusConflict
	case Gone:
		return http.StatusGone
	case TooLarge:
		return http.StatusRequestEntityTooLarge
	case StagingFull, DiskFull:
		return http.StatusInsufficientStorage
	case Stalled:
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

// verdictStatus is the HTTP status of an admission's verdict. Pending is a 4xx on
// purpose: Nix retries any answer but 200, 201 and 204, and a 4xx makes nix copy
// print the reason instead of reporting a success.
func verdictStatus(v Verdict) int {
	switch v.Outcome {
	case Admitted:
		return http.StatusOK
	case Pending:
		return http.StatusForbidden
	}
	return rejectionStatus(v.Why)
}

func (g *Gate) getNAR(w http.ResponseWriter, r *http.Request) error {
	u := NARDir + "/" + r.PathValue("file")
	if _, _, err := binarycache.ParseNARURL(u); err != nil {
		return problem.NotFound("%s: no such NAR", u)
	}
	ok, err := g.db.narServable(r.Context(), u)
	if err != nil {
		return err
	}
	if !ok && r.Method == http.MethodHead {
		// Uploaders ask before sending: a NAR held in staging or for a pending path
		// need not come again.
		// Asking does not refresh a staged NAR's age: staging expires by first
		// receipt, so nobody can keep it full by asking.
		_, ok, err = g.db.getNAR(r.Context(), u)
		if err != nil {
			return err
		}
	}
	if !ok {
		return problem.NotFound("%s: no admitted path has this NAR", u)
	}
	f, err := os.Open(filepath.Join(g.Dir, filepath.FromSlash(u)))
	if err != nil {
		return problem.NotFound("%s: gone", u)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/x-nix-nar")
	http.ServeContent(w, r, "", fi.ModTime(), f)
	return nil
}

func (g *Gate) putNAR(w http.ResponseWriter, r *http.Request) error {
	u := NARDir + "/" + r.PathValue("file")
	limit := g.Cfg.MaxNARSize + g.Cfg.MaxNARSize/64 + 1<<20 // incompressible data grows a little
	if r.ContentLength > limit {
		return problem.New(http.StatusRequestEntityTooLarge, "", "NAR %s: %d bytes is larger than max_nar_size (%d bytes)", u, r.ContentLength, g.Cfg.MaxNARSize)
	}
	naming := NamedByFileHash
	switch h := r.Header.Get(binarycache.NARNameHeader); h {
	case "":
	case binarycache.NARNameNarHash:
		naming = NamedByNarHash
	default:
		return problem.BadRequest("NAR %s: %s: %.40q is not %s", u, binarycache.NARNameHeader, h, binarycache.NARNameNarHash)
	}
	msg, err := g.PutNARNamed(r.Context(), u, http.MaxBytesReader(w, g.paced(w, r), limit), remote(r), naming)
	if err != nil {
		return err
	}
	io.WriteString(w, msg+"\n")
	return nil
}

func (g *Gate) readBody(w http.ResponseWriter, r *http.Request, max int64, what string) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, g.paced(w, r), max))
	if errors.As(err, new(errStalled)) {
		return nil, problem.New(http.StatusRequestTimeout, "", "%s: %v", what, err)
	}
	if err != nil {
		return nil, problem.New(http.StatusRequestEntityTooLarge, "", "%s larger than %d bytes or cut short", what, max)
	}
	return b, nil
}

// upload adapts an upload method (certificates, CRL) to a handler.
func (g *Gate) upload(max int64, what string, fn func(context.Context, []byte, string) (string, error)) func(http.ResponseWriter, *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		body, err := g.readBody(w, r, max, what)
		if err != nil {
			return err
		}
		msg, err := fn(r.Context(), body, remote(r))
		if err != nil {
			return err
		}
		io.WriteString(w, msg+"\n")
		return nil
	}
}

func (g *Gate) postStatus(w http.ResponseWriter, r *http.Request) error {
	body, err := g.readBody(w, r, 4<<20, "status request")
	if err != nil {
		return err
	}
	var paths []string
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" {
			continue
		}
		if _, _, err := storepath.Split(p); err != nil {
			return problem.BadRequest("status: %v", err)
		}
		paths = append(paths, p)
	}
	lines, err := g.Status(r.Context(), paths)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	for _, l := range lines {
		io.WriteString(w, oneLine(l)+"\n")
	}
	return nil
}

func (g *Gate) getLogHead(w http.ResponseWriter, r *http.Request) error {
	b, err := g.tlog.Head().MarshalJSON()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(b, '\n'))
	return nil
}

// Request bodies must keep coming: each bodyChunk bytes within Gate.BodyTimeout
// (bodyTimeout by default) of the last chunk, or the upload is cut off. A
// deadline per chunk, not per request, so a large honest upload on a slow link
// still works, while a stalled one holds its connection and buffers no longer.
const (
	bodyChunk   = 64 << 10
	bodyTimeout = 30 * time.Second
)

// pacedBody sets the connection's read deadline before each chunk of a body.
type pacedBody struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration
	left    int
}

func (p *pacedBody) Read(b []byte) (int, error) {
	if p.left <= 0 {
		// Not every connection can take a deadline (a test's, say): then none.
		p.rc.SetReadDeadline(time.Now().Add(p.timeout))
		p.left = bodyChunk
	}
	n, err := p.r.Read(b)
	p.left -= n
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = errStalled{p.timeout}
	}
	return n, err
}

func (p *pacedBody) Close() error { return p.r.Close() }

// errStalled is a request body that stopped coming (answered 408).
type errStalled struct{ timeout time.Duration }

func (e errStalled) Error() string {
	return fmt.Sprintf("the upload stalled: each %d KiB of a request body must arrive within %s", bodyChunk>>10, e.timeout)
}

// paced returns r's body read with a deadline per chunk.
func (g *Gate) paced(w http.ResponseWriter, r *http.Request) io.ReadCloser {
	t := g.BodyTimeout
	if t <= 0 {
		t = bodyTimeout
	}
	return &pacedBody{r: r.Body, rc: http.NewResponseController(w), timeout: t}
}

// ServeOptions override the configuration for one run.
type ServeOptions struct {
	Listen string
	// Ready, if set, is called with the bound address once the gate listens.
	Ready func(addr string)
	// Wrap, if set, wraps the gate's handler (request metrics).
	Wrap func(http.Handler) http.Handler
}

// Serve runs the gate until ctx is done: HTTPS with certificate files or ACME, or
// plain HTTP on a loopback address only. Expired staging and pending entries are
// dropped every minute.
func (g *Gate) Serve(ctx context.Context, opts ServeOptions) error {
	addr := opts.Listen
	if addr == "" {
		addr = g.Cfg.Listen
	}
	var tlsConf *tls.Config
	switch {
	case g.Cfg.ACME.Directory != "":
		names := g.Cfg.ACME.Names
		if len(names) == 0 {
			names = []string{g.Cfg.Name}
		}
		a, err := tlscert.NewACME(tlscert.ACMEConfig{Directory: g.Cfg.ACME.Directory, Names: names, Email: g.Cfg.ACME.Email,
			Root: g.trust.v.Root(), CacheDir: filepath.Join(g.Dir, ACMECacheDir), PasswordFile: config.Resolve(g.Dir, g.Cfg.PasswordFile), Log: g.Log})
		if err != nil {
			return err
		}
		go a.Run(ctx)
		tlsConf = &tls.Config{GetCertificate: a.GetCertificate, NextProtos: tlscert.NextProtos, MinVersion: tls.VersionTLS12}
	case g.Cfg.TLS.CertFile != "":
		kp := &tlscert.Files{Cert: config.Resolve(g.Dir, g.Cfg.TLS.CertFile), Key: config.Resolve(g.Dir, g.Cfg.TLS.KeyFile), PasswordFile: config.Resolve(g.Dir, g.Cfg.PasswordFile)}
		if _, err := kp.GetCertificate(nil); err != nil {
			return err
		}
		tlsConf = &tls.Config{GetCertificate: kp.GetCertificate, MinVersion: tls.VersionTLS12}
	default:
		if !IsLoopback(addr) {
			return fmt.Errorf("listen %s: plain HTTP is only allowed on loopback addresses (127.0.0.1, ::1): configure tls (cert_file, key_file) or acme (directory) in %s, or listen on 127.0.0.1", addr, ConfigFile)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
	}
	h := g.Handler()
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 15 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(g.Log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				srv.Shutdown(shut)
				cancel()
				close(done)
				return
			case <-t.C:
				if err := g.Expire(ctx); err != nil {
					g.Log.Error("expiring staging and pending", "err", err)
				}
			}
		}
	}()
	if err := g.Expire(ctx); err != nil {
		g.Log.Error("expiring staging and pending", "err", err)
	}
	if iv := g.Cfg.CRLFetchInterval.D(); iv > 0 {
		go g.newCRLFetcher().run(ctx, iv)
	}
	if opts.Ready != nil {
		opts.Ready(ln.Addr().String())
	}
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-done
		return nil
	}
	return err
}
