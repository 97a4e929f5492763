package acme

import (
	"encoding/json"
	"net/http"
)

// directory serves the directory object (RFC 8555 §7.1.1), built once per base URL and
// provisioner. keyChange is listed because it works; newAuthz is not (no
// pre-authorization).
func (s *Server) directory(q *request) (*response, error) {
	key := q.base + " " + q.prov.name
	if b, ok := s.dirs.Load(key); ok {
		return &response{status: http.StatusOK, raw: b.([]byte), ctype: "application/json"}, nil
	}
	profiles := map[string]string{}
	for n, p := range q.prov.profiles {
		profiles[n] = p.Description
	}
	dir := map[string]any{
		"newNonce":    q.url("new-nonce"),
		"newAccount":  q.url("new-account"),
		"newOrder":    q.url("new-order"),
		"revokeCert":  q.url("revoke-cert"),
		"keyChange":   q.url("key-change"),
		"renewalInfo": q.url("renewal-info"),
		"meta": map[string]any{
			"externalAccountRequired": q.prov.requireEAB,
			"profiles":                profiles,
		},
	}
	b, err := json.MarshalIndent(dir, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	s.dirs.Store(key, b)
	return &response{status: http.StatusOK, raw: b, ctype: "application/json"}, nil
}

// newNonce answers HEAD with 200 and GET with 204 (RFC 8555 §7.2); the nonce is in the
// Replay-Nonce header every response carries.
func (s *Server) newNonce(q *request) (*response, error) {
	status := http.StatusNoContent
	if q.r.Method == http.MethodHead {
		status = http.StatusOK
	}
	return &response{status: status, header: http.Header{}}, nil
}
