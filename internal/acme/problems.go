package acme

import (
	"encoding/json"
	"fmt"
	"net/http"

	"nixpki/internal/problem"
)

// ACME error types (RFC 8555 §6.7, RFC 9773 §7.4, draft-aaron-acme-profiles).
const (
	errNS                    = "urn:ietf:params:acme:error:"
	errAccountDoesNotExist   = errNS + "accountDoesNotExist"
	errAlreadyRevoked        = errNS + "alreadyRevoked"
	errAlreadyReplaced       = errNS + "alreadyReplaced"
	errBadCSR                = errNS + "badCSR"
	errBadNonce              = errNS + "badNonce"
	errBadPublicKey          = errNS + "badPublicKey"
	errBadRevocationReason   = errNS + "badRevocationReason"
	errBadSignatureAlgorithm = errNS + "badSignatureAlgorithm"
	errConnection            = errNS + "connection"
	errDNS                   = errNS + "dns"
	errExternalAccount       = errNS + "externalAccountRequired"
	errIncorrectResponse     = errNS + "incorrectResponse"
	errInvalidContact        = errNS + "invalidContact"
	errInvalidProfile        = errNS + "invalidProfile"
	errMalformed             = errNS + "malformed"
	errOrderNotReady         = errNS + "orderNotReady"
	errRateLimited           = errNS + "rateLimited"
	errRejectedIdentifier    = errNS + "rejectedIdentifier"
	errServerInternal        = errNS + "serverInternal"
	errTLS                   = errNS + "tls"
	errUnauthorized          = errNS + "unauthorized"
	errUnsupportedContact    = errNS + "unsupportedContact"
	errUnsupportedIdentifier = errNS + "unsupportedIdentifier"
)

// acmeErr makes an ACME problem with an HTTP status.
func acmeErr(status int, typ, format string, args ...any) *problem.Problem {
	return problem.New(status, typ, format, args...)
}

func malformed(format string, args ...any) *problem.Problem {
	return acmeErr(http.StatusBadRequest, errMalformed, format, args...)
}

func unauthorized(format string, args ...any) *problem.Problem {
	return acmeErr(http.StatusForbidden, errUnauthorized, format, args...)
}

func notFound(what string) *problem.Problem {
	return acmeErr(http.StatusNotFound, errMalformed, "no such %s", what)
}

func badNonce(format string, args ...any) *problem.Problem {
	return acmeErr(http.StatusBadRequest, errBadNonce, format, args...)
}

// wireProblem is what a problem document looks like on the wire, with the fields
// ACME adds.
type wireProblem struct {
	*problem.Problem
	Algorithms []string `json:"algorithms,omitempty"`
}

// problemJSON renders a problem for storing on an order or challenge.
func problemJSON(p *problem.Problem) []byte {
	b, _ := json.Marshal(p)
	return b
}

// toProblem turns any error into an ACME problem: non-problems become serverInternal
// (the cause is logged, not shown), untyped problems get an ACME type.
func toProblem(err error) *problem.Problem {
	p := problem.From(err)
	if p.Type == "" || p.Type == "about:blank" {
		cp := *p
		if cp.Status >= 500 || cp.Status == 0 {
			cp.Type = errServerInternal
		} else {
			cp.Type = errMalformed
		}
		p = &cp
	}
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	return p
}

// internal wraps an unexpected failure with what was being done.
func internal(what string, err error) error {
	return fmt.Errorf("%s: %w", what, err)
}
