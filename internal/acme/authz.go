package acme

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"nixpki/internal/store"
)

// Challenge types.
const (
	http01    = "http-01"
	dns01     = "dns-01"
	tlsALPN01 = "tls-alpn-01"
)

// challengeTypes offered for an identifier: wildcards only dns-01, IP addresses
// http-01 and tls-alpn-01 (RFC 8738), DNS names all three.
func challengeTypes(a *store.ACMEAuthz) []string {
	switch {
	case a.Wildcard:
		return []string{dns01}
	case a.Identifier.Type == "ip":
		return []string{http01, tlsALPN01}
	}
	return []string{http01, dns01, tlsALPN01}
}

func offers(a *store.ACMEAuthz, typ string) bool {
	for _, t := range challengeTypes(a) {
		if t == typ {
			return true
		}
	}
	return false
}

type authzJSON struct {
	Identifier store.ACMEIdentifier `json:"identifier"`
	Status     string               `json:"status"`
	Expires    string               `json:"expires"`
	Challenges []challengeJSON      `json:"challenges"`
	Wildcard   bool                 `json:"wildcard,omitempty"`
}

type challengeJSON struct {
	Type      string          `json:"type"`
	URL       string          `json:"url"`
	Status    string          `json:"status"`
	Token     string          `json:"token"`
	Validated string          `json:"validated,omitempty"`
	Error     json.RawMessage `json:"error,omitempty"`
}

// authzStatus is the status as clients see it: pending past its expiry is expired.
func (s *Server) authzStatus(a *store.ACMEAuthz) string {
	if a.Status == "pending" && s.now().After(a.Expires) {
		return "expired"
	}
	return a.Status
}

func (s *Server) challengeJSON(q *request, a *store.ACMEAuthz, typ string) challengeJSON {
	c := challengeJSON{Type: typ, URL: q.url("chall", a.ID, typ), Status: "pending", Token: a.Token}
	if a.ChallType == typ {
		c.Status, c.Validated, c.Error = a.ChallStatus, rfc3339(a.Validated), a.ChallError
	}
	return c
}

func (s *Server) authzResponse(q *request, a *store.ACMEAuthz) *response {
	j := authzJSON{Identifier: a.Identifier, Status: s.authzStatus(a), Expires: rfc3339(a.Expires), Wildcard: a.Wildcard}
	if a.Status == "pending" {
		for _, t := range challengeTypes(a) {
			j.Challenges = append(j.Challenges, s.challengeJSON(q, a, t))
		}
	} else if a.ChallType != "" {
		j.Challenges = []challengeJSON{s.challengeJSON(q, a, a.ChallType)} // the one that decided it
	} else {
		j.Challenges = []challengeJSON{}
	}
	res := jsonResponse(http.StatusOK, j)
	if j.Status == "pending" {
		retryAfter(res.header, time.Second)
	}
	return res
}

func (s *Server) ownAuthz(q *request) (*store.ACMEAuthz, error) {
	a, err := s.db.GetACMEAuthz(q.ctx, q.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("authorization")
	}
	if err != nil {
		return nil, internal("reading the authorization", err)
	}
	if a.AccountID != q.account.ID {
		return nil, unauthorized("this authorization belongs to another account")
	}
	return a, nil
}

// authz returns an authorization (POST-as-GET) or deactivates it (RFC 8555 §7.5.2).
func (s *Server) authz(q *request) (*response, error) {
	a, err := s.ownAuthz(q)
	if err != nil {
		return nil, err
	}
	if len(q.payload) == 0 {
		return s.authzResponse(q, a), nil
	}
	var p struct {
		Status string `json:"status"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	if p.Status != "deactivated" {
		return nil, malformed("an authorization can only be updated to {\"status\": \"deactivated\"}")
	}
	prob := problemJSON(unauthorized("authorization for %s was deactivated by the client", a.Identifier.Value))
	err = s.db.DeactivateACMEAuthz(q.ctx, a.ID, prob, nil)
	if errors.Is(err, store.ErrConflict) {
		return nil, unauthorized("the authorization is %s: only pending or valid ones can be deactivated", s.authzStatus(a))
	}
	if err != nil {
		return nil, storeErr(err, "authorization")
	}
	a.Status = "deactivated"
	s.log.Info("acme authorization deactivated", "provisioner", q.prov.name, "account", q.account.ID, "authz", a.ID, "identifier", a.Identifier.Value)
	return s.authzResponse(q, a), nil
}

// challenge returns a challenge (POST-as-GET) or, for the payload {}, starts its
// validation (RFC 8555 §7.5.1); validation runs in the background.
func (s *Server) challenge(q *request) (*response, error) {
	a, err := s.ownAuthz(q)
	if err != nil {
		return nil, err
	}
	typ := q.r.PathValue("type")
	if !offers(a, typ) {
		return nil, notFound("challenge")
	}
	if len(q.payload) > 0 {
		var p map[string]any
		if err := q.decode(&p); err != nil {
			return nil, err
		}
		if s.authzStatus(a) != "pending" {
			return nil, acmeErr(http.StatusBadRequest, errMalformed, "the authorization is %s: nothing to validate", s.authzStatus(a))
		}
		var started bool
		a, started, err = s.db.StartACMEChallenge(q.ctx, a.ID, typ, s.now(), nil)
		if err != nil {
			return nil, storeErr(err, "authorization")
		}
		if started {
			s.log.Info("acme challenge started", "provisioner", q.prov.name, "account", q.account.ID, "authz", a.ID, "identifier", a.Identifier.Value, "challenge", typ)
			s.startValidation(a, q.account.Thumbprint)
		}
	}
	c := s.challengeJSON(q, a, typ)
	res := jsonResponse(http.StatusOK, c)
	res.header.Add("Link", link(q.url("authz", a.ID), "up"))
	if c.Status == "processing" {
		retryAfter(res.header, time.Second)
	}
	return res, nil
}
