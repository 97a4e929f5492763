package gate

import (
	"bytes"
	"context"
	"crypto/x509"
	"path/filepath"
	"time"
)

// Stats is the gate's state as monitoring reads it.
type Stats struct {
	// Paths counts store paths by state (admitted, pending, quarantined).
	Paths map[string]int
	// RejectedPaths counts paths whose last upload was rejected.
	RejectedPaths int
	// LogEntries is the size of the log (0 when read without opening the gate).
	LogEntries uint64
	MaxCRLAge  time.Duration
	CRLs       []CRLStat
}

// CRLStat is a CRL the gate holds.
type CRLStat struct {
	Issuer                 string // the issuer's common name
	ThisUpdate, NextUpdate time.Time
	// Gating: the issuer is an intermediate, whose CRL must be younger than
	// max_crl_age for its members' signatures to count (the root's CRL is not).
	Gating bool
}

// Stats reads the gate's state.
func (g *Gate) Stats(ctx context.Context) (*Stats, error) {
	root, err := ReadRoot(g.Dir)
	if err != nil {
		return nil, err
	}
	st, err := readStats(ctx, g.db, g.Cfg, root)
	if err != nil {
		return nil, err
	}
	st.LogEntries = g.tlog.Head().Size
	return st, nil
}

// LoadSettings returns the configuration of the gate in dir: from settingsFile when
// given (checked against what the directory recorded, secret paths resolved), else
// from G/config.json.
func LoadSettings(dir, settingsFile string) (Config, error) {
	if settingsFile == "" {
		return LoadConfig(dir)
	}
	return loadSettings(dir, settingsFile)
}

// ReadStats reads the state of the gate in dir, configured by cfg, without opening
// it for serving (no key needed); safe while `gate serve` runs. LogEntries is left 0:
// VerifyLog reads the log.
func ReadStats(ctx context.Context, dir string, cfg Config) (*Stats, error) {
	root, err := ReadRoot(dir)
	if err != nil {
		return nil, err
	}
	d, err := openDB(filepath.Join(dir, DBFile))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return readStats(ctx, d, cfg, root)
}

func readStats(ctx context.Context, d *db, cfg Config, root *x509.Certificate) (*Stats, error) {
	st := &Stats{Paths: map[string]int{}, MaxCRLAge: cfg.MaxCRLAge.D()}
	q := d.r()
	rows, err := q.QueryContext(ctx, `SELECT state, COUNT(*) FROM paths GROUP BY state`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			rows.Close()
			return nil, err
		}
		st.Paths[s] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if err := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM rejections WHERE store_path <> ''`).Scan(&st.RejectedPaths); err != nil {
		return nil, err
	}
	crls, err := d.allCRLs(ctx)
	if err != nil {
		return nil, err
	}
	for _, der := range crls {
		l, err := x509.ParseRevocationList(der)
		if err != nil {
			continue // stored only after parsing: cannot happen
		}
		st.CRLs = append(st.CRLs, CRLStat{Issuer: l.Issuer.CommonName, ThisUpdate: l.ThisUpdate, NextUpdate: l.NextUpdate,
			Gating: !bytes.Equal(l.RawIssuer, root.RawSubject)})
	}
	return st, nil
}

// noteVerdict logs an admission or a pending verdict (rejections are logged where
// they are recorded) and tells OnVerdict.
func (g *Gate) noteVerdict(v Verdict, remote string) {
	verdict, reason := "admitted", ""
	switch v.Outcome {
	case Pending:
		verdict = "pending"
	case Rejected:
		verdict, reason = "rejected", rejectionClass(v.Why)
	}
	if verdict != "rejected" {
		g.Log.Info("narinfo "+verdict, "detail", v.Message, "remote", remote)
	}
	if g.OnVerdict != nil {
		g.OnVerdict(verdict, reason)
	}
}

// rejectionClass names a rejection: what the uploader must fix.
func rejectionClass(why Rejection) string {
	switch why {
	case Invalid:
		return "invalid" // malformed, mismatching its NAR, or missing references
	case Unsigned:
		return "signatures" // no signature counts
	case Conflict:
		return "conflict" // other content admitted, or references changed
	case Gone:
		return "nar_expired"
	}
	return "other"
}
