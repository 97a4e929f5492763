package enroll

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"nixpki/internal/ca"
	"nixpki/internal/nixcert"
	"nixpki/internal/problem"
	"nixpki/internal/x509util"
)

// maxRequestBody bounds enrollment requests: a CSR, an SSH certificate and a
// certificate chain are a few kilobytes.
const maxRequestBody = 64 << 10

// ChallengeResponse is the body of POST /nix/challenge.
type ChallengeResponse struct {
	Challenge string    `json:"challenge"`
	Expires   time.Time `json:"expires"`
}

// EnrollJSON is the body of POST /nix/enroll and POST /nix/renew. Binary values are
// standard base64; the SSH certificate is in authorized_keys format.
type EnrollJSON struct {
	CSR      []byte `json:"csr"`
	Subject  string `json:"subject,omitempty"`
	Validity string `json:"validity,omitempty"`

	Token string `json:"token,omitempty"`

	SSHCertificate string `json:"ssh_certificate,omitempty"`
	SSHSignature   []byte `json:"ssh_signature,omitempty"`
	Challenge      string `json:"challenge,omitempty"`

	// Certificate is the PEM chain to renew (POST /nix/renew).
	Certificate string `json:"certificate,omitempty"`
}

// IssuedJSON is the answer to a successful enrollment or renewal.
type IssuedJSON struct {
	Serial      string    `json:"serial"`
	NotAfter    time.Time `json:"not_after"`
	Certificate string    `json:"certificate"` // PEM: leaf, then the Nix intermediate
}

// Handler serves enrollment on the CA's HTTPS side:
//
//	POST /nix/challenge  → ChallengeResponse (for SSH enrollment)
//	POST /nix/enroll     EnrollJSON with a token or an SSH certificate → IssuedJSON
//	POST /nix/renew      EnrollJSON with the current certificate → IssuedJSON
//
// The Nix CRL is at GET /crl/nix.crl on both listeners (internal/server).
func Handler(c *ca.CA, log *slog.Logger) http.Handler {
	a := NewAuthority(c)
	if log != nil {
		a.Log = log
	}
	return a.Handler()
}

// Handler returns the HTTP handler of a (see the package-level Handler).
func (a *Authority) Handler() http.Handler {
	mux := http.NewServeMux()
	h := func(f problem.HandlerFunc) http.Handler { return problem.Handler(a.Log, f) }
	mux.Handle("POST /nix/challenge", h(a.limited(a.serveChallenge)))
	mux.Handle("POST /nix/enroll", h(a.limited(a.serveEnroll)))
	mux.Handle("POST /nix/renew", h(a.limited(a.serveRenew)))
	mux.Handle("/nix/", h(func(w http.ResponseWriter, r *http.Request) error {
		switch r.URL.Path {
		case "/nix/challenge", "/nix/enroll", "/nix/renew":
			p := problem.New(http.StatusMethodNotAllowed, "", "%s takes POST, not %s", r.URL.Path, r.Method)
			p.Headers = http.Header{"Allow": {"POST"}}
			return p
		}
		return problem.NotFound("no such Nix endpoint: POST /nix/challenge, /nix/enroll or /nix/renew")
	}))
	return mux
}

// limited applies the per-address rate limit before any other work: every request
// here is unauthenticated until its body is checked.
func (a *Authority) limited(f problem.HandlerFunc) problem.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if ok, wait := a.limit.allow(r.RemoteAddr, time.Now()); !ok {
			secs := int((wait + time.Second - 1) / time.Second)
			p := problem.New(http.StatusTooManyRequests, "", "too many enrollment requests from %s: retry in %d s (nix.rate_per_minute, nix.rate_burst)", clientKey(r.RemoteAddr), secs)
			p.Headers = http.Header{"Retry-After": {strconv.Itoa(secs)}}
			return p
		}
		return f(w, r)
	}
}

func (a *Authority) serveChallenge(w http.ResponseWriter, r *http.Request) error {
	v, exp, err := a.NewChallenge(r.Context())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, ChallengeResponse{Challenge: v, Expires: exp})
}

func readEnrollJSON(w http.ResponseWriter, r *http.Request) (*EnrollJSON, time.Duration, error) {
	// The media type must be application/json exactly (parameters such as charset
	// aside): a prefix test would take application/jsonx or application/json-seq.
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		if ct == "" {
			return nil, 0, problem.New(http.StatusUnsupportedMediaType, "", "send Content-Type application/json (the request has none)")
		}
		return nil, 0, problem.New(http.StatusUnsupportedMediaType, "", "send Content-Type application/json, not %q", clip(ct, 64))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxRequestBody))
	if err != nil {
		return nil, 0, problem.New(http.StatusRequestEntityTooLarge, "", "request larger than %d bytes", maxRequestBody)
	}
	var req EnrollJSON
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, 0, problem.BadRequest("malformed request: %v", err)
	}
	var validity time.Duration
	if req.Validity != "" {
		if validity, err = time.ParseDuration(req.Validity); err != nil || validity <= 0 {
			return nil, 0, problem.BadRequest("validity %q: give a positive duration such as 168h", req.Validity)
		}
	}
	return &req, validity, nil
}

func (a *Authority) serveEnroll(w http.ResponseWriter, r *http.Request) error {
	req, validity, err := readEnrollJSON(w, r)
	if err != nil {
		return err
	}
	er := EnrollRequest{CSR: req.CSR, Subject: req.Subject, Validity: validity, Remote: r.RemoteAddr,
		Token: req.Token, SSHCertificate: []byte(req.SSHCertificate), SSHSignature: req.SSHSignature, Challenge: req.Challenge}
	var iss *ca.Issued
	switch {
	case req.Token != "" && req.SSHCertificate != "":
		return problem.BadRequest("give a token or an SSH certificate, not both")
	case req.Token != "":
		iss, err = a.EnrollToken(r.Context(), er)
	case req.SSHCertificate != "":
		iss, err = a.EnrollSSH(r.Context(), er)
	default:
		return problem.BadRequest("no authentication: give a token or an SSH certificate")
	}
	if err != nil {
		return err
	}
	return writeIssued(w, iss)
}

func (a *Authority) serveRenew(w http.ResponseWriter, r *http.Request) error {
	req, validity, err := readEnrollJSON(w, r)
	if err != nil {
		return err
	}
	certs, err := nixcert.ParseChainPEM([]byte(req.Certificate))
	if err != nil {
		return problem.BadRequest("the certificate to renew: %v", err)
	}
	iss, err := a.Renew(r.Context(), RenewRequest{CSR: req.CSR, Chain: certs, Validity: validity, Remote: r.RemoteAddr})
	if err != nil {
		return err
	}
	return writeIssued(w, iss)
}

func writeIssued(w http.ResponseWriter, iss *ca.Issued) error {
	return writeJSON(w, http.StatusCreated, IssuedJSON{
		Serial: x509util.SerialHex(iss.Cert.SerialNumber), NotAfter: iss.Cert.NotAfter, Certificate: string(iss.ChainPEM()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, err = w.Write(append(b, '\n'))
	return err
}

// errProblem extracts a problem's detail from a response body, for the client.
func errProblem(status string, body []byte) error {
	var p problem.Problem
	if json.Unmarshal(body, &p) == nil && p.Detail != "" {
		return errors.New(p.Detail)
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return errors.New(status + ": " + s)
}

// clip bounds a string from a request before it goes into a message or a record,
// marking the cut: what a client sends is echoed or stored only this long.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
