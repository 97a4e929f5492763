// Package doctor checks the health of a CA data directory and of a gate, each check
// with a status, as `nixpki doctor` reports them. The thresholds follow Vault's PKI
// health check: the root should have a year left (critical under half a year), an
// intermediate 60 days (critical under 30).
package doctor

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Status is a check's outcome; its value is the exit code `nixpki doctor` uses.
type Status int

const (
	OK       Status = 0
	Info     Status = 2
	Warning  Status = 3
	Critical Status = 4
)

func (s Status) String() string {
	switch s {
	case OK:
		return "ok"
	case Info:
		return "info"
	case Warning:
		return "warning"
	}
	return "critical"
}

func (s Status) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Check is one finding.
type Check struct {
	Name   string `json:"name"`
	Status Status `json:"status"`
	Detail string `json:"detail"`
}

// Report is every check of a run.
type Report struct {
	Status Status  `json:"status"`
	Checks []Check `json:"checks"`
}

// Add appends checks and raises the report's status to the worst of them.
func (r *Report) Add(cs ...Check) {
	for _, c := range cs {
		r.Checks = append(r.Checks, c)
		r.Status = max(r.Status, c.Status)
	}
}

func check(name string, s Status, format string, args ...any) Check {
	return Check{Name: name, Status: s, Detail: fmt.Sprintf(format, args...)}
}

// Window is a validity threshold: warn with less than Warn left, critical under Crit.
type Window struct{ Warn, Crit time.Duration }

// Thresholds for the CA certificates.
var (
	RootWindow         = Window{Warn: 365 * day, Crit: 182 * day}
	IntermediateWindow = Window{Warn: 60 * day, Crit: 30 * day}
)

const day = 24 * time.Hour

// validity grades a CA certificate's remaining validity.
func validity(name string, c *x509.Certificate, w Window, now time.Time) Check {
	left := c.NotAfter.Sub(now)
	switch {
	case now.Before(c.NotBefore):
		return check(name, Critical, "not valid before %s (is the clock right?)", stamp(c.NotBefore))
	case left <= 0:
		return check(name, Critical, "expired %s: everything it signed fails verification", stamp(c.NotAfter))
	case left < w.Crit:
		return check(name, Critical, "expires %s, in %s (less than %s): replace it now", stamp(c.NotAfter), days(left), days(w.Crit))
	case left < w.Warn:
		return check(name, Warning, "expires %s, in %s (less than %s): plan its replacement", stamp(c.NotAfter), days(left), days(w.Warn))
	}
	return check(name, OK, "valid until %s (%s left)", stamp(c.NotAfter), days(left))
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// days renders a duration in days, or hours under two days.
func days(d time.Duration) string {
	if d < 0 {
		return "-" + days(-d)
	}
	if d < 2*day {
		return fmt.Sprintf("%.0fh", d.Hours())
	}
	return fmt.Sprintf("%dd", int(d/day))
}

// list names at most n items, then how many more there are.
func list(items []string, n int) string {
	if len(items) <= n {
		return strings.Join(items, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(items[:n], ", "), len(items)-n)
}
