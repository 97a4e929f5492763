// Package problem is nixpki's one HTTP error type: an RFC 7807 problem document that
// implements error. Handlers return errors; Handler writes them in one place.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// Problem is an RFC 7807 problem document.
type Problem struct {
	Type        string       `json:"type,omitempty"`
	Title       string       `json:"title,omitempty"`
	Status      int          `json:"status,omitempty"`
	Detail      string       `json:"detail,omitempty"`
	Instance    string       `json:"instance,omitempty"`
	Subproblems []Subproblem `json:"subproblems,omitempty"`
	// Headers are added to the response (e.g. Retry-After).
	Headers http.Header `json:"-"`
	// Err is the underlying cause, logged but never shown to the client.
	Err error `json:"-"`
}

// Subproblem is an RFC 8555 §6.7.1 per-identifier problem.
type Subproblem struct {
	Type       string `json:"type"`
	Detail     string `json:"detail,omitempty"`
	Identifier any    `json:"identifier,omitempty"`
}

func (p *Problem) Error() string {
	if p.Detail != "" {
		return p.Detail
	}
	return p.Title
}

func (p *Problem) Unwrap() error { return p.Err }

// New makes a problem with a status and a detail message. The first error among
// args becomes Err, so errors.Is and errors.As find the cause behind the problem.
func New(status int, typ, format string, args ...any) *Problem {
	p := &Problem{Type: typ, Status: status, Title: http.StatusText(status), Detail: fmt.Sprintf(format, args...)}
	for _, a := range args {
		if err, ok := a.(error); ok {
			p.Err = err
			break
		}
	}
	return p
}

// BadRequest, NotFound and friends are shorthands for generic (about:blank) problems.
func BadRequest(format string, args ...any) *Problem {
	return New(http.StatusBadRequest, "", format, args...)
}
func NotFound(format string, args ...any) *Problem {
	return New(http.StatusNotFound, "", format, args...)
}

// From turns any error into a Problem: problems pass through, anything else becomes
// a 500 whose detail hides the cause (which is logged).
func From(err error) *Problem {
	var p *Problem
	if errors.As(err, &p) {
		return p
	}
	// A dependency that is up but cannot serve this now (a read-only database)
	// says so, and the client may retry elsewhere.
	var u interface{ Unavailable() string }
	if errors.As(err, &u) {
		return &Problem{Status: http.StatusServiceUnavailable, Title: "Service Unavailable", Detail: u.Unavailable(), Err: err}
	}
	return &Problem{Status: http.StatusInternalServerError, Title: "Internal Server Error", Detail: "internal error; see the server log", Err: err}
}

// Write writes err as application/problem+json and logs server-side failures.
func Write(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	p := From(err)
	if p.Status == 0 {
		p.Status = http.StatusInternalServerError
	}
	if p.Status >= 500 && log != nil {
		if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
			// The client went away: nothing failed on this side, and nobody reads
			// the answer.
			log.Debug("request ended by the client", "method", r.Method, "path", r.URL.Path)
			return
		}
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", p.Status, "err", errOr(p))
	}
	for k, vs := range p.Headers {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(p)
}

func errOr(p *Problem) error {
	if p.Err != nil {
		return p.Err
	}
	return p
}

// HandlerFunc is an http handler that returns an error instead of writing it.
type HandlerFunc func(http.ResponseWriter, *http.Request) error

// Handler adapts f to http.Handler, writing any returned error as a problem.
func Handler(log *slog.Logger, f HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := f(w, r); err != nil {
			Write(w, r, log, err)
		}
	})
}
