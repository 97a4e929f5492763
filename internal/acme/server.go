// Package acme is nixpki's ACME server (RFC 8555 with RFC 8737 tls-alpn-01, RFC 8738
// IP identifiers, RFC 9773 renewal information and draft-aaron-acme-profiles). It
// serves one directory per provisioner at /acme/<name>/directory and keeps all of
// its state in the CA's database, so several servers sharing that database serve as
// one: nonces are sealed by a key kept there and spent there, every state change is
// one transaction, and validations that a stopped server left half-done are picked up
// by another. Certificates are minted by (*ca.CA).Sign after provisioner policy.
//
// One file per resource: directory, nonce, jws, account, keychange, eab, order, authz,
// challenge, validate (the http-01, dns-01 and tls-alpn-01 validators), finalize,
// certificate, revoke, renewalinfo; policy holds the provisioners' rules and
// problems the ACME error types.
package acme

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// Options configure the ACME server.
type Options struct {
	CA *ca.CA
	// DB defaults to CA.DB.
	DB     Store
	Log    *slog.Logger
	Config config.ACME
	// BaseURL is the https base clients use, e.g. https://ca.internal:8443. A request
	// whose Host is another of the CA's names or addresses, on the same port, gets
	// URLs with that host instead. Empty means https://<first name>:<the port the
	// request arrived on>.
	BaseURL string
	// ValidationAttempts bounds the tries of one challenge validation (default 3), with
	// RetryDelay (default 1s, doubling) between them.
	ValidationAttempts int
	RetryDelay         time.Duration
	// Now is the clock (default the CA's).
	Now func() time.Time
}

// Server is the ACME HTTP handler; Close stops its background work.
type Server struct {
	ca       *ca.CA
	db       Store
	log      *slog.Logger
	base     string
	names    []string // the CA's DNS names and addresses, lower case
	scheme   string   // of base, https when none is configured
	port     string   // of base, explicit
	now      func() time.Time
	provs    map[string]*provisioner
	nonces   *nonces
	spender  *spender
	val      *validator
	mux      *http.ServeMux
	keys     keyCache
	accounts accountCache
	dirs     sync.Map // base + provisioner → directory JSON
	chain    []byte   // the TLS intermediate in PEM, appended to every leaf

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the ACME server for a loaded CA.
func New(opts Options) (*Server, error) {
	if opts.CA == nil {
		return nil, errors.New("acme: no CA")
	}
	if opts.DB == nil {
		opts.DB = opts.CA.DB
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = opts.CA.Now
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	provs, maxLife, err := compileProvisioners(opts.Config, opts.CA.Config.Policy)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	key, err := opts.DB.ACMESecret(ctx, "nonce-hmac", randomBytes32)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("acme: reading the nonce key: %w", err)
	}
	s := &Server{
		ca: opts.CA, db: opts.DB, log: opts.Log, now: opts.Now, provs: provs,
		base:    strings.TrimRight(opts.BaseURL, "/"),
		names:   ownNames(&opts.CA.Config),
		nonces:  &nonces{key: key, now: opts.Now, maxLife: maxLife},
		spender: newSpender(opts.DB, opts.Log, opts.Now),
		val:     newValidator(opts),
		chain:   x509util.ChainPEM(opts.CA.TLS.Cert),
		ctx:     ctx, cancel: cancel,
	}
	s.scheme, s.port = "https", ""
	if s.base != "" {
		u, err := url.Parse(s.base)
		if err != nil || u.Host == "" {
			cancel()
			return nil, fmt.Errorf("acme: base URL %q is not an absolute URL", opts.BaseURL)
		}
		s.scheme, s.port = u.Scheme, portOf(s.base)
	}
	s.routes()
	s.wg.Add(1)
	go s.recoverValidations()
	return s, nil
}

// Close stops validations and the nonce committer and waits for them.
func (s *Server) Close() error {
	s.cancel()
	s.wg.Wait()
	s.spender.close()
	return nil
}

// ServeHTTP serves /acme/<provisioner>/...
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// jwsKind says how a POST must be signed.
type jwsKind int

const (
	noJWS    jwsKind = iota // GET/HEAD resources
	byKID                   // an account's key, named by kid
	byJWK                   // a key given in the header (newAccount)
	byEither                // revokeCert: the account's or the certificate's key
)

type handlerFunc func(q *request) (*response, error)

func (s *Server) routes() {
	mux := http.NewServeMux()
	type route struct {
		method, path string
		kind         jwsKind
		h            handlerFunc
	}
	rs := []route{
		{"GET", "directory", noJWS, s.directory},
		{"GET", "new-nonce", noJWS, s.newNonce},
		{"POST", "new-account", byJWK, s.newAccount},
		{"POST", "account/{id}", byKID, s.account},
		{"POST", "account/{id}/orders", byKID, s.orders},
		{"POST", "key-change", byKID, s.keyChange},
		{"POST", "new-order", byKID, s.newOrder},
		{"POST", "order/{id}", byKID, s.order},
		{"POST", "order/{id}/finalize", byKID, s.finalize},
		{"POST", "authz/{id}", byKID, s.authz},
		{"POST", "chall/{id}/{type}", byKID, s.challenge},
		{"POST", "cert/{serial}", byKID, s.certificate},
		{"POST", "revoke-cert", byEither, s.revokeCert},
		{"GET", "renewal-info/{id}", noJWS, s.renewalInfo},
	}
	for _, rt := range rs {
		p := "/acme/{prov}/" + rt.path
		mux.Handle(rt.method+" "+p, s.handle(rt.kind, rt.h))
		allow := rt.method
		if allow == "GET" {
			allow = "GET, HEAD"
		}
		mux.Handle(p, s.handle(noJWS, func(q *request) (*response, error) {
			e := acmeErr(http.StatusMethodNotAllowed, errMalformed, "%s is not allowed here: use %s", q.r.Method, rt.method)
			e.Headers = http.Header{"Allow": {allow}}
			return nil, e
		}))
	}
	mux.Handle("/acme/", s.handle(noJWS, func(q *request) (*response, error) {
		return nil, notFound("ACME resource " + q.r.URL.Path)
	}))
	s.mux = mux
}

// request is one ACME request after provisioner lookup and JWS verification.
type request struct {
	r       *http.Request
	ctx     context.Context
	prov    *provisioner
	base    string // https base URL
	payload []byte
	nonce   *store.Nonce       // spent by verify before the handler runs
	account *store.ACMEAccount // kid requests
	jwk     *jwkKey            // jwk requests
}

// response is what a handler produced; the adapter writes it with the common headers.
type response struct {
	status int
	header http.Header
	json   any
	raw    []byte
	ctype  string
}

func jsonResponse(status int, v any) *response {
	return &response{status: status, json: v, header: http.Header{}}
}

// url builds an absolute URL of this provisioner's resources.
func (q *request) url(parts ...string) string {
	return q.base + "/acme/" + q.prov.name + "/" + strings.Join(parts, "/")
}

func (q *request) accountURL(id string) string { return q.url("account", id) }

// decode reads the JSON payload into v; an empty payload (POST-as-GET) is malformed.
func (q *request) decode(v any) error {
	if len(q.payload) == 0 {
		return malformed("this request needs a JSON payload, not POST-as-GET")
	}
	if err := json.Unmarshal(q.payload, v); err != nil {
		return malformed("the payload is not the expected JSON object: %s", jsonDetail(err))
	}
	return nil
}

// handle adapts a handler: provisioner, client rate limit, JWS (which spends the
// nonce), the handler, and writing — with a fresh Replay-Nonce, the
// directory Link and no-store on every response, errors included.
func (s *Server) handle(kind jwsKind, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := &request{r: r, ctx: r.Context(), base: s.baseFor(r)}
		res, err := s.serve(q, kind, h)
		hdr := w.Header()
		hdr.Set("Replay-Nonce", s.nonces.make())
		hdr.Set("Cache-Control", "no-store")
		if q.prov != nil {
			hdr.Add("Link", link(q.url("directory"), "index"))
		}
		if err != nil {
			s.writeProblem(w, r, err)
			return
		}
		for k, vs := range res.header {
			hdr[k] = append(hdr[k], vs...)
		}
		body := res.raw
		if res.json != nil {
			body, _ = json.MarshalIndent(res.json, "", "  ")
			res.ctype = "application/json"
		}
		if res.ctype != "" {
			hdr.Set("Content-Type", res.ctype)
		}
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(res.status)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

func (s *Server) serve(q *request, kind jwsKind, h handlerFunc) (*response, error) {
	name := q.r.PathValue("prov")
	if name == "" {
		name, _, _ = strings.Cut(strings.TrimPrefix(q.r.URL.Path, "/acme/"), "/")
	}
	q.prov = s.provs[name]
	if q.prov == nil {
		return nil, acmeErr(http.StatusNotFound, errMalformed, "no ACME provisioner %q", name)
	}
	if err := q.prov.ipLimit.allow(clientIP(q.r), s.now()); err != nil {
		return nil, err
	}
	var res *response
	var err error
	if kind != noJWS {
		err = s.verify(q, kind)
	}
	if err == nil {
		res, err = h(q)
	}
	if err != nil && q.account != nil {
		// The cached account may be what failed (deactivated or rekeyed by another
		// server): read it again next time.
		s.accounts.drop(q.account.ID)
	}
	return res, err
}

// nonceError maps a failure to spend a nonce: reuse is badNonce, an account that
// changed under the request unauthorized, anything else internal.
func nonceError(err error) error {
	if errors.Is(err, store.ErrNonceReused) {
		return badNonce("the nonce was used before: get a fresh one")
	}
	if errors.Is(err, store.ErrAccountChanged) {
		return unauthorized("the account is no longer valid with this key (deactivated, or its key changed)")
	}
	return err
}

func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := toProblem(err)
	if p.Status >= 500 {
		s.log.Error("acme request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", errors.Unwrap(p))
	}
	for k, vs := range p.Headers {
		w.Header()[k] = append(w.Header()[k], vs...)
	}
	wp := wireProblem{Problem: p}
	if p.Type == errBadSignatureAlgorithm {
		wp.Algorithms = algorithmNames
	}
	body, _ := json.MarshalIndent(wp, "", "  ")
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(p.Status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// baseFor is the base URL of a request's resources: the host the client used when it
// is one of the CA's names or addresses on the server's port, so that a client that
// reached the CA by IP gets URLs it can reach; otherwise the configured base (an
// unknown Host is never reflected). Without a configured base (a port chosen at
// listen time), the port is the one the request arrived on.
func (s *Server) baseFor(r *http.Request) string {
	scheme, port, fallback := s.scheme, s.port, s.base
	if s.base == "" {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			_, port, _ = net.SplitHostPort(la.String())
		}
		fallback = scheme + "://" + joinHostPort(s.names[0], port, scheme)
	}
	if host, ok := s.ownHost(r.Host, scheme, port); ok {
		return scheme + "://" + joinHostPort(host, port, scheme)
	}
	return fallback
}

// ownHost normalizes a Host (host[:port]) that names the CA on the given port.
func (s *Server) ownHost(hostport, scheme, port string) (string, bool) {
	host, hport := hostport, defaultPort(scheme)
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, hport = h, p
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if a, err := netip.ParseAddr(host); err == nil {
		host = a.Unmap().String()
	}
	return host, hport == port && slices.Contains(s.names, host)
}

// ownNames lists the CA's names and addresses in the form ownHost compares.
func ownNames(c *config.Config) []string {
	var out []string
	for _, n := range c.DNSNames {
		out = append(out, strings.TrimSuffix(strings.ToLower(n), "."))
	}
	for _, ip := range c.IPAddresses {
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.Unmap().String())
		}
	}
	if len(out) == 0 {
		out = []string{"localhost"}
	}
	return out
}

// portOf is the port of a base URL, explicit or the scheme's default.
func portOf(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return ""
	}
	if p := u.Port(); p != "" {
		return p
	}
	return defaultPort(u.Scheme)
}

func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// joinHostPort writes host:port, bracketing IPv6 and leaving out the scheme's default
// port.
func joinHostPort(host, port, scheme string) string {
	if port == defaultPort(scheme) {
		if strings.Contains(host, ":") {
			return "[" + host + "]"
		}
		return host
	}
	return net.JoinHostPort(host, port)
}

func link(url, rel string) string { return "<" + url + `>;rel="` + rel + `"` }

func retryAfter(h http.Header, d time.Duration) {
	h.Set("Retry-After", strconv.Itoa(int((d+time.Second-1)/time.Second)))
}

// storeErr maps the store's sentinel errors of state changes onto ACME problems.
func storeErr(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNonceReused), errors.Is(err, store.ErrAccountChanged):
		return nonceError(err)
	case errors.Is(err, store.ErrNotFound):
		return notFound(what)
	}
	return internal(what, err)
}

// readBody reads a request body up to limit bytes.
func readBody(w io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(w, limit+1))
	if err != nil {
		return nil, malformed("reading the request body: %v", err)
	}
	if int64(len(b)) > limit {
		return nil, acmeErr(http.StatusRequestEntityTooLarge, errMalformed, "the request body is larger than this provisioner's limit of %d bytes", limit)
	}
	return b, nil
}

// Provisioners lists the provisioners' names, sorted.
func (s *Server) Provisioners() []string {
	names := make([]string, 0, len(s.provs))
	for n := range s.provs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
