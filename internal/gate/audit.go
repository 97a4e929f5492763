package gate

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"nixpki/internal/nix/storepath"
	"nixpki/internal/tlog"
)

// ListPending reads the pending paths of the gate in dir without opening it for
// serving (no key needed); safe while `gate serve` runs.
func ListPending(dir string) ([]PathRec, error) {
	d, err := openDB(filepath.Join(dir, DBFile))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return d.pathsInState(context.Background(), StatePending)
}

// VerifyLog verifies the gate's log with the public key in G/gate.pub.
func VerifyLog(dir string) (*tlog.Verified, error) {
	pub, err := ReadPublic(dir)
	if err != nil {
		return nil, err
	}
	return tlog.Verify(filepath.Join(dir, LogDir), pub.Key)
}

// CertInfo is a certificate as the log recorded its upload.
type CertInfo struct {
	Serial    string    `json:"serial"`
	Subject   string    `json:"subject"`
	Key       string    `json:"key"`
	Targets   []string  `json:"targets"`
	Scope     string    `json:"scope"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Issuer    string    `json:"issuer"`
	SHA256    string    `json:"sha256"`
	Entry     uint64    `json:"-"` // the log entry that recorded it
}

// AuditEvent is a logged event about a store path.
type AuditEvent struct {
	Entry   uint64
	Time    time.Time
	Type    string // admission, pending, rejection, quarantine, signatures, expired
	Path    string
	Signers []Signer
	Certs   []CertInfo // the certificates of Signers, as uploaded
	Reason  string
}

type pathEntry struct {
	Path    string   `json:"path"`
	Signers []Signer `json:"signers"`
	Added   []Signer `json:"added"`
	Reason  string   `json:"reason"`
	Rule    string   `json:"rule"`
}

// Audit verifies the log and returns the events about the store path (or hash part)
// query, in log order; with an empty query, every admission. It answers who
// introduced a path, under which certificate, and when.
func Audit(dir, query string) ([]AuditEvent, *tlog.Verified, error) {
	v, err := VerifyLog(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("the gate's log does not verify, so it cannot be trusted to answer: %w", err)
	}
	certs := map[string]CertInfo{}
	var out []AuditEvent
	for _, r := range v.Records {
		switch r.Entry.Type {
		case "certificate":
			var c CertInfo
			if json.Unmarshal(r.Entry.Data, &c) == nil {
				c.Entry = r.Index
				certs[c.SHA256] = c
			}
			continue
		case "admission", "pending", "rejection", "quarantine", "signatures", "expired":
		default:
			continue
		}
		var e pathEntry
		if json.Unmarshal(r.Entry.Data, &e) != nil || e.Path == "" {
			continue
		}
		if query == "" && r.Entry.Type != "admission" {
			continue
		}
		if query != "" && storepath.HashPart(e.Path) != storepath.HashPart(query) {
			continue
		}
		ev := AuditEvent{Entry: r.Index, Time: r.Entry.Time, Type: r.Entry.Type, Path: e.Path, Signers: append(e.Signers, e.Added...), Reason: e.Reason}
		if ev.Reason == "" && e.Rule != "" {
			ev.Reason = e.Rule
		}
		for _, s := range ev.Signers {
			if c, ok := certs[s.Cert]; ok {
				ev.Certs = append(ev.Certs, c)
			}
		}
		out = append(out, ev)
	}
	return out, v, nil
}

// Describe renders an event in one or two lines.
func (e AuditEvent) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s  %-11s %s  (log entry %d)", e.Time.UTC().Format(time.RFC3339), e.Type, e.Path, e.Entry)
	for _, s := range e.Signers {
		fmt.Fprintf(&b, "\n    signed by %s with key %s, certificate %s", s.Subject, s.KeyName, strings.ToUpper(s.Serial))
		for _, c := range e.Certs {
			if c.SHA256 != s.Cert {
				continue
			}
			fmt.Fprintf(&b, " (valid %s to %s, targets %s, scope %s; uploaded in log entry %d)", c.NotBefore.UTC().Format(time.RFC3339),
				c.NotAfter.UTC().Format(time.RFC3339), strings.Join(c.Targets, ","), c.Scope, c.Entry)
		}
	}
	if e.Reason != "" && e.Type != "admission" {
		fmt.Fprintf(&b, "\n    %s", e.Reason)
	}
	return b.String()
}

// Records reads what the gate in dir holds for verifiers, without opening it for
// serving (no key needed; safe while `gate serve` runs): the CA certificates
// (intermediates) and member certificates uploaded to it, and the CRLs it keeps.
// Everything returned is self-authenticating: callers check it against their root.
func Records(dir string) (intermediates, leaves []*x509.Certificate, crls [][]byte, err error) {
	d, err := openDB(filepath.Join(dir, DBFile))
	if err != nil {
		return nil, nil, nil, err
	}
	defer d.Close()
	ctx := context.Background()
	cas, lvs, err := d.allCerts(ctx)
	if err != nil {
		return nil, nil, nil, err
	}
	parse := func(ders [][]byte) []*x509.Certificate {
		var out []*x509.Certificate
		for _, der := range ders {
			if c, err := x509.ParseCertificate(der); err == nil {
				out = append(out, c)
			}
		}
		return out
	}
	crls, err = d.allCRLs(ctx)
	return parse(cas), parse(lvs), crls, err
}
