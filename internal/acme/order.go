package acme

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/problem"
	"nixpki/internal/store"
)

// orderJSON is an order object (RFC 8555 §7.1.3, with profile and replaces).
type orderJSON struct {
	Status         string                 `json:"status"`
	Expires        string                 `json:"expires"`
	Identifiers    []store.ACMEIdentifier `json:"identifiers"`
	Profile        string                 `json:"profile,omitempty"`
	NotBefore      string                 `json:"notBefore,omitempty"`
	NotAfter       string                 `json:"notAfter,omitempty"`
	Error          json.RawMessage        `json:"error,omitempty"`
	Authorizations []string               `json:"authorizations"`
	Finalize       string                 `json:"finalize"`
	Certificate    string                 `json:"certificate,omitempty"`
	Replaces       string                 `json:"replaces,omitempty"`
}

func rfc3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// orderStatus is the status as clients see it: a pending or ready order past its
// expiry is invalid.
func (s *Server) orderStatus(o *store.ACMEOrder) string {
	if (o.Status == "pending" || o.Status == "ready") && s.now().After(o.Expires) {
		return "invalid"
	}
	return o.Status
}

func (s *Server) orderResponse(q *request, status int, o *store.ACMEOrder) *response {
	j := orderJSON{
		Status: s.orderStatus(o), Expires: rfc3339(o.Expires), Identifiers: o.Identifiers, Profile: o.Profile,
		NotBefore: rfc3339(o.NotBefore), NotAfter: rfc3339(o.NotAfter), Error: o.Error,
		Finalize: q.url("order", o.ID, "finalize"), Authorizations: make([]string, len(o.AuthzIDs)),
	}
	for i, id := range o.AuthzIDs {
		j.Authorizations[i] = q.url("authz", id)
	}
	if o.CertSerial != "" {
		j.Certificate = q.url("cert", o.CertSerial)
	}
	if o.Replaces != "" {
		j.Replaces = s.certID(o.Replaces)
	}
	res := jsonResponse(status, j)
	res.header.Set("Location", q.url("order", o.ID))
	if j.Status == "pending" || j.Status == "processing" {
		retryAfter(res.header, time.Second)
	}
	return res
}

// newOrder creates an order (RFC 8555 §7.4), or returns the account's live order for
// the same identifiers, profile and replaced certificate.
func (s *Server) newOrder(q *request) (*response, error) {
	var p struct {
		Identifiers []store.ACMEIdentifier `json:"identifiers"`
		NotBefore   string                 `json:"notBefore"`
		NotAfter    string                 `json:"notAfter"`
		Profile     string                 `json:"profile"`
		Replaces    string                 `json:"replaces"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	now := s.now().UTC().Truncate(time.Second)
	o := &store.ACMEOrder{
		ID: newSeqID(), AccountID: q.account.ID, Provisioner: q.prov.name, Status: "pending",
		Expires: now.Add(orderLifetime), CreatedAt: now, Profile: p.Profile,
	}
	if o.Profile == "" {
		o.Profile = q.prov.defaultProfile
	}
	if _, ok := q.prov.profiles[o.Profile]; !ok {
		return nil, acmeErr(http.StatusBadRequest, errInvalidProfile, "provisioner %q has no profile %q (see the directory's meta.profiles)", q.prov.name, p.Profile)
	}
	var err error
	if o.NotBefore, err = parseOrderTime("notBefore", p.NotBefore); err != nil {
		return nil, err
	}
	if o.NotAfter, err = parseOrderTime("notAfter", p.NotAfter); err != nil {
		return nil, err
	}
	if err := s.checkWindow(q.prov, o.Profile, o.NotBefore, o.NotAfter, "change or leave out notBefore and notAfter"); err != nil {
		return nil, err
	}
	if o.Identifiers, err = s.orderIdentifiers(q, p.Identifiers); err != nil {
		return nil, err
	}
	if o.Replaces, err = s.replaces(q, p.Replaces, o.Identifiers); err != nil {
		return nil, err
	}
	authzs := make([]*store.ACMEAuthz, len(o.Identifiers))
	for i, id := range o.Identifiers {
		a := &store.ACMEAuthz{
			ID: newSeqID(), OrderID: o.ID, AccountID: o.AccountID, Identifier: id, Status: "pending",
			Expires: o.Expires, Token: newToken(),
		}
		if w, ok := cutWildcard(id.Value); ok && id.Type == "dns" {
			a.Identifier.Value, a.Wildcard = w, true
		}
		authzs[i] = a
		o.AuthzIDs = append(o.AuthzIDs, a.ID)
	}
	out, reused, err := s.db.CreateACMEOrder(q.ctx, o, authzs, store.NewOrderOptions{Reuse: true, MaxPerMinute: q.prov.ordersPerMinute, Now: now}, nil)
	switch {
	case errors.Is(err, store.ErrRateLimited):
		e := acmeErr(http.StatusTooManyRequests, errRateLimited, "account %s created %d orders in the last minute, the limit of provisioner %q", q.account.ID, q.prov.ordersPerMinute, q.prov.name)
		e.Headers = http.Header{}
		retryAfter(e.Headers, time.Minute)
		return nil, e
	case errors.Is(err, store.ErrAlreadyReplaced):
		return nil, acmeErr(http.StatusConflict, errAlreadyReplaced, "the certificate %q is already replaced by another order", p.Replaces)
	case err != nil:
		return nil, storeErr(err, "order")
	}
	if !reused {
		s.log.Info("acme order created", "provisioner", q.prov.name, "order", o.ID, "identifiers", o.Identifiers)
	}
	return s.orderResponse(q, http.StatusCreated, out), nil
}

// notBeforeSkew is how far in the past an order's notBefore may be when the order is
// created or its certificate issued: clock skew, not backdating.
const notBeforeSkew = 5 * time.Minute

// checkWindow checks an order's requested validity window against policy, now: the
// certificate must be issuable with exactly that notBefore and notAfter (RFC 8555
// §7.4). notBefore may lie at most notBeforeSkew in the past; the lifetime (from
// notBefore, or now) is at most the profile's, capped by the provisioner's maximum;
// notAfter is in the future and not after the TLS intermediate's expiry.
func (s *Server) checkWindow(p *provisioner, profile string, notBefore, notAfter time.Time, fix string) error {
	now := s.now().UTC()
	start := now
	if !notBefore.IsZero() {
		if notBefore.Before(now.Add(-notBeforeSkew)) {
			return malformed("notBefore %s is more than %s in the past: certificates are not backdated; %s", rfc3339(notBefore), notBeforeSkew, fix)
		}
		start = notBefore
	}
	issuerEnd := s.ca.TLS.Cert.NotAfter
	if !start.Before(issuerEnd) {
		return malformed("notBefore %s is not before the issuing CA's expiry, %s; %s", rfc3339(start), rfc3339(issuerEnd), fix)
	}
	if notAfter.IsZero() {
		return nil
	}
	life := p.lifetime(profile)
	switch {
	case !notAfter.After(now) || !notAfter.After(start):
		return malformed("notAfter %s must be in the future and after notBefore; %s", rfc3339(notAfter), fix)
	case notAfter.Sub(start) > life:
		return malformed("notAfter %s asks for a lifetime of %s, more than profile %q's %s on provisioner %q; %s", rfc3339(notAfter), notAfter.Sub(start).Round(time.Second), profile, life, p.name, fix)
	case notAfter.After(issuerEnd):
		return malformed("notAfter %s is after the issuing CA's expiry, %s: no certificate outlives its issuer; %s", rfc3339(notAfter), rfc3339(issuerEnd), fix)
	}
	return nil
}

func parseOrderTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, malformed("%s %q is not an RFC 3339 time", field, v)
	}
	return t.UTC().Truncate(time.Second), nil
}

// orderIdentifiers normalizes the identifiers of a new order and applies the
// provisioner's policy and the CA's name constraints; wildcards keep their "*.".
func (s *Server) orderIdentifiers(q *request, in []store.ACMEIdentifier) ([]store.ACMEIdentifier, error) {
	if len(in) == 0 {
		return nil, malformed("an order needs at least one identifier")
	}
	if len(in) > maxIdentifiers {
		return nil, acmeErr(http.StatusBadRequest, errRejectedIdentifier, "an order may have at most %d identifiers", maxIdentifiers)
	}
	var out []store.ACMEIdentifier
	var subs []problem.Subproblem
	seen := map[store.ACMEIdentifier]bool{}
	var names []string
	for _, id := range in {
		n, wildcard, sub := q.prov.normalizeIdentifier(id)
		if sub != nil {
			subs = append(subs, *sub)
			continue
		}
		if wildcard {
			n.Value = "*." + n.Value
		}
		if seen[n] {
			continue
		}
		seen[n] = true
		out = append(out, n)
		names = append(names, n.Value)
	}
	if len(subs) == 0 {
		sans, err := ca.ParseSANs(names, true)
		if err == nil {
			err = ca.CheckNameConstraints(s.ca.TLS, sans)
		}
		if err != nil {
			return nil, acmeErr(http.StatusBadRequest, errRejectedIdentifier, "%v", err)
		}
		return out, nil
	}
	typ := subs[0].Type
	if len(subs) > 1 {
		typ = errRejectedIdentifier
		for _, sp := range subs {
			if sp.Type == errUnsupportedIdentifier {
				typ = errUnsupportedIdentifier
			}
		}
	}
	e := acmeErr(http.StatusBadRequest, typ, "%s", subs[0].Detail)
	if len(subs) > 1 {
		e.Detail = "several identifiers are refused: see subproblems"
	}
	e.Subproblems = subs
	return nil, e
}

func cutWildcard(v string) (string, bool) {
	if len(v) > 2 && v[:2] == "*." {
		return v[2:], true
	}
	return v, false
}

func newToken() string {
	b, _ := randomBytes32()
	return encodeB64(b)
}

// order returns an order of the requester's (POST-as-GET).
func (s *Server) order(q *request) (*response, error) {
	o, err := s.ownOrder(q)
	if err != nil {
		return nil, err
	}
	return s.orderResponse(q, http.StatusOK, o), nil
}

func (s *Server) ownOrder(q *request) (*store.ACMEOrder, error) {
	o, err := s.db.GetACMEOrder(q.ctx, q.r.PathValue("id"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && o.Provisioner != q.prov.name) {
		return nil, notFound("order")
	}
	if err != nil {
		return nil, internal("reading the order", err)
	}
	if o.AccountID != q.account.ID {
		return nil, unauthorized("this order belongs to another account")
	}
	return o, nil
}
