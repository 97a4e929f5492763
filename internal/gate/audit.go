package gate

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"

	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
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

// CheckDB checks that the gate's database in dir agrees with its verified log v:
// every path the database serves was admitted in the log (its last admission not
// followed by a quarantine) with the same NarHash, and the narinfo served carries
// exactly the signatures the log recorded for it (at admission and added since),
// besides the gate's own. It returns how many served paths it checked. Safe while
// `gate serve` runs; a path admitted meanwhile may be reported as missing from v
// (read before it): check again.
func CheckDB(dir string, v *tlog.Verified) (int, error) {
	pub, err := ReadPublic(dir)
	if err != nil {
		return 0, err
	}
	cfg, err := LoadConfig(dir)
	if err != nil {
		return 0, err
	}
	type logged struct {
		narHash  string
		admitted bool
		sigs     map[string]bool
		entry    uint64
	}
	state := map[string]*logged{}
	for _, r := range v.Records {
		var e struct {
			Path    string   `json:"path"`
			NarHash string   `json:"nar_hash"`
			Signers []Signer `json:"signers"`
			Added   []Signer `json:"added"`
		}
		switch r.Entry.Type {
		case "admission", "signatures", "quarantine":
		default:
			continue
		}
		if json.Unmarshal(r.Entry.Data, &e) != nil || e.Path == "" {
			continue
		}
		switch r.Entry.Type {
		case "admission":
			st := &logged{narHash: e.NarHash, admitted: true, sigs: map[string]bool{}, entry: r.Index}
			for _, s := range e.Signers {
				st.sigs[s.Sig] = true
			}
			state[e.Path] = st
		case "signatures":
			if st := state[e.Path]; st != nil && st.admitted {
				for _, s := range e.Added {
					st.sigs[s.Sig] = true
				}
			}
		case "quarantine":
			if st := state[e.Path]; st != nil {
				st.admitted = false
			}
		}
	}
	d, err := openDB(filepath.Join(dir, DBFile))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	recs, err := d.pathsInState(context.Background(), StateAdmitted)
	if err != nil {
		return 0, err
	}
	var bad []string
	for _, rec := range recs {
		st := state[rec.StorePath]
		narHash := nixhash.FormatSHA256(rec.NarHash)
		switch {
		case st == nil:
			bad = append(bad, fmt.Sprintf("%s is served, but the log has no admission of it", rec.StorePath))
			continue
		case !st.admitted:
			bad = append(bad, fmt.Sprintf("%s is served, but the log quarantined it after its admission (log entry %d)", rec.StorePath, st.entry))
			continue
		case st.narHash != narHash:
			bad = append(bad, fmt.Sprintf("%s is served with NarHash %s, but the log admitted NarHash %s (log entry %d)", rec.StorePath, narHash, st.narHash, st.entry))
			continue
		}
		ni, err := narinfo.Parse(strings.NewReader(rec.Served), cfg.StoreDir)
		if err == nil && (ni.StorePath != rec.StorePath || ni.NarHash != rec.NarHash) {
			err = fmt.Errorf("it describes %s, NarHash %s", ni.StorePath, nixhash.FormatSHA256(ni.NarHash))
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: the narinfo served does not match its record: %v", rec.StorePath, err))
			continue
		}
		served := map[string]bool{}
		for _, s := range ni.Sigs {
			if s.Name != pub.Name {
				served[s.String()] = true
			}
		}
		if !maps.Equal(served, st.sigs) {
			bad = append(bad, fmt.Sprintf("%s is served with %d member signatures, but the log recorded %d for it (log entry %d and the signatures added since): the served narinfo's signers differ from the log's",
				rec.StorePath, len(served), len(st.sigs), st.entry))
		}
	}
	if len(bad) > 0 {
		return len(recs), fmt.Errorf("the gate's database disagrees with its log:\n  %s", strings.Join(bad, "\n  "))
	}
	return len(recs), nil
}
