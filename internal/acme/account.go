package acme

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"time"

	"nixpki/internal/store"
)

// accountJSON is an account object (RFC 8555 §7.1.2).
type accountJSON struct {
	Status  string   `json:"status"`
	Contact []string `json:"contact,omitempty"`
	Orders  string   `json:"orders"`
}

func (q *request) accountResponse(status int, a *store.ACMEAccount) *response {
	res := jsonResponse(status, accountJSON{Status: a.Status, Contact: a.Contacts, Orders: q.url("account", a.ID, "orders")})
	res.header.Set("Location", q.accountURL(a.ID))
	return res
}

// newID returns a random 128-bit identifier, base64url.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return encodeB64(b[:])
}

// newSeqID returns an ID for orders and authorizations that sorts by creation time:
// the Unix time in milliseconds (11 hex digits), then 96 random bits. Rows created
// together then share b-tree pages, so a commit writes fewer pages than with IDs
// scattered over the whole table; the random part keeps IDs unguessable.
func newSeqID() string {
	var b [12]byte
	rand.Read(b[:])
	return fmt.Sprintf("%011x", time.Now().UnixMilli()) + encodeB64(b[:])
}

func encodeB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// checkContacts accepts mailto: URLs with one address each (RFC 8555 §7.3).
func checkContacts(cs []string) error {
	for _, c := range cs {
		addr, ok := strings.CutPrefix(c, "mailto:")
		if !ok {
			return acmeErr(http.StatusBadRequest, errUnsupportedContact, "contact %q: only mailto: URLs are supported", c)
		}
		if strings.ContainsAny(addr, "?,") {
			return acmeErr(http.StatusBadRequest, errInvalidContact, "contact %q: give one address without header fields", c)
		}
		if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr {
			return acmeErr(http.StatusBadRequest, errInvalidContact, "contact %q is not an email address", c)
		}
	}
	return nil
}

// newAccount creates an account, or finds the key's existing one (RFC 8555 §7.3).
func (s *Server) newAccount(q *request) (*response, error) {
	var p struct {
		Contact                []string        `json:"contact"`
		OnlyReturnExisting     bool            `json:"onlyReturnExisting"`
		ExternalAccountBinding json.RawMessage `json:"externalAccountBinding"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	existing, err := s.db.GetACMEAccountByKey(q.ctx, q.prov.name, q.jwk.thumb)
	switch {
	case err == nil:
		if existing.Status != "valid" {
			return nil, unauthorized("the account of this key is %s", existing.Status)
		}
		return q.accountResponse(http.StatusOK, existing), nil
	case !errors.Is(err, store.ErrNotFound):
		return nil, internal("looking up the account", err)
	case p.OnlyReturnExisting:
		return nil, acmeErr(http.StatusBadRequest, errAccountDoesNotExist, "no account has this key")
	}
	if err := checkContacts(p.Contact); err != nil {
		return nil, err
	}
	a := &store.ACMEAccount{
		ID: newID(), Provisioner: q.prov.name, Thumbprint: q.jwk.thumb, JWK: q.jwk.json,
		Status: "valid", Contacts: p.Contact, CreatedAt: s.now().UTC(),
	}
	if len(p.ExternalAccountBinding) > 0 && string(p.ExternalAccountBinding) != "null" {
		if a.EABKID, err = s.checkEAB(q, p.ExternalAccountBinding); err != nil {
			return nil, err
		}
	} else if q.prov.requireEAB {
		return nil, acmeErr(http.StatusUnauthorized, errExternalAccount, "provisioner %q requires External Account Binding: create a key with `nixpki acme eab create --provisioner %s`", q.prov.name, q.prov.name)
	}
	err = s.db.CreateACMEAccount(q.ctx, a, nil)
	switch {
	case errors.Is(err, store.ErrConflict): // created concurrently with the same key
		existing, err := s.db.GetACMEAccountByKey(q.ctx, q.prov.name, q.jwk.thumb)
		if err != nil {
			return nil, internal("reading the account", err)
		}
		return q.accountResponse(http.StatusOK, existing), nil
	case errors.Is(err, store.ErrEABUsed):
		return nil, unauthorized("the external account key %q is already bound to an account", a.EABKID)
	case err != nil:
		return nil, storeErr(err, "account")
	}
	s.log.Info("acme account created", "provisioner", q.prov.name, "account", a.ID)
	return q.accountResponse(http.StatusCreated, a), nil
}

// currentAccount answers with the requester's account as stored now (q.account may
// be a cached copy with older contacts).
func (s *Server) currentAccount(q *request) (*response, error) {
	a, err := s.db.GetACMEAccount(q.ctx, q.account.ID)
	if err != nil {
		return nil, storeErr(err, "account")
	}
	if a.Status != "valid" {
		return nil, unauthorized("account %s is %s", q.accountURL(a.ID), a.Status)
	}
	return q.accountResponse(http.StatusOK, a), nil
}

// ownAccount checks that the {id} in the path is the requester's account.
func (q *request) ownAccount() error {
	if q.r.PathValue("id") != q.account.ID {
		return unauthorized("this is not your account")
	}
	return nil
}

// account reads, updates (contact) or deactivates the requester's account (§7.3.2).
func (s *Server) account(q *request) (*response, error) {
	if err := q.ownAccount(); err != nil {
		return nil, err
	}
	if len(q.payload) == 0 {
		return s.currentAccount(q)
	}
	var p struct {
		Contact *[]string `json:"contact"`
		Status  string    `json:"status"`
	}
	if err := q.decode(&p); err != nil {
		return nil, err
	}
	if p.Status != "" && p.Status != "deactivated" && p.Status != q.account.Status {
		return nil, malformed("an account's status can only be changed to \"deactivated\"")
	}
	var contacts []string
	if p.Contact != nil {
		if err := checkContacts(*p.Contact); err != nil {
			return nil, err
		}
		contacts = append([]string{}, *p.Contact...)
	}
	status := ""
	if p.Status == "deactivated" {
		status = p.Status
	}
	if contacts == nil && status == "" {
		return s.currentAccount(q)
	}
	a, err := s.db.UpdateACMEAccount(q.ctx, q.account.ID, contacts, status, nil)
	s.accounts.drop(q.account.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unauthorized("the account is no longer valid")
	}
	if err != nil {
		return nil, storeErr(err, "account")
	}
	if status != "" {
		s.log.Info("acme account deactivated", "provisioner", q.prov.name, "account", a.ID)
	}
	return q.accountResponse(http.StatusOK, a), nil
}

const ordersPage = 100

// orders lists the account's orders, newest first, 100 a page (§7.1.2.1).
func (s *Server) orders(q *request) (*response, error) {
	if err := q.ownAccount(); err != nil {
		return nil, err
	}
	page, _ := strconv.Atoi(q.r.URL.Query().Get("page"))
	page = max(page, 0)
	ids, err := s.db.ListACMEOrders(q.ctx, q.account.ID, ordersPage+1, page*ordersPage)
	if err != nil {
		return nil, internal("listing orders", err)
	}
	res := jsonResponse(http.StatusOK, nil)
	if len(ids) > ordersPage {
		ids = ids[:ordersPage]
		res.header.Add("Link", link(q.url("account", q.account.ID, "orders")+"?page="+strconv.Itoa(page+1), "next"))
	}
	urls := make([]string, len(ids))
	for i, id := range ids {
		urls[i] = q.url("order", id)
	}
	res.json = map[string][]string{"orders": urls}
	return res, nil
}
