package doctor

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"nixpki/internal/ca"
	"nixpki/internal/config"
	"nixpki/internal/keys"
	"nixpki/internal/monitor"
	"nixpki/internal/store"
	"nixpki/internal/x509util"
)

// CAOptions say which CA to check.
type CAOptions struct {
	Dir string
	// ConfigFile holds the settings when they live outside Dir (default
	// Dir/config.json).
	ConfigFile string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Clock skew between this host and the database that is worth a warning, and that
// is critical (certificates backdate notBefore by a minute only).
const (
	skewWarn = 30 * time.Second
	skewCrit = 5 * time.Minute
)

// CheckCA runs every check of a CA data directory into r.
func CheckCA(ctx context.Context, o CAOptions, r *Report) {
	if o.Now == nil {
		o.Now = time.Now
	}
	now := o.Now()
	cfg, err := loadConfig(o)
	if err != nil {
		r.Add(check("configuration", Critical, "%v", err))
		return
	}
	r.Add(check("configuration", OK, "%s", configSource(o)))
	certs := map[string]*x509.Certificate{}
	for _, n := range []string{ca.IssuerRoot, ca.IssuerTLS, ca.IssuerNix} {
		name, w := n+" intermediate validity", IntermediateWindow
		if n == ca.IssuerRoot {
			name, w = "root validity", RootWindow
		}
		c, err := x509util.ReadCertFile(ca.CertPath(o.Dir, n))
		if err != nil {
			r.Add(check(name, Critical, "%v", err))
			continue
		}
		certs[n] = c
		r.Add(validity(name, c, w, now))
	}
	r.Add(keyChecks(o.Dir, cfg)...)

	// The database the server uses: database.url, NIXPKI_DATABASE_URL or
	// --database-url select PostgreSQL, else the SQLite file in the directory.
	dbs := ca.DatabaseSettings(o.Dir, cfg)
	if dbs.URL == "" {
		if _, err := os.Stat(dbs.SQLitePath); err != nil {
			r.Add(check("database", Critical, "%v: is --dir the CA's data directory?", err))
			return
		}
	}
	// As is: an old PostgreSQL schema is a finding, not a reason to stop.
	db, err := store.OpenAsIs(ctx, dbs)
	if err != nil {
		r.Add(check("database", Critical, "cannot open: %v", err))
		return
	}
	defer db.Close()
	migrate := "run serve once to migrate"
	if dbs.URL != "" {
		migrate = "run `nixpki db migrate --dir " + o.Dir + "` (with a role allowed to create tables)"
	}
	checks, current := databaseChecks(ctx, db, db.Dialect()+" "+dbs.Describe(), migrate, now)
	r.Add(checks...)
	if !current {
		return // its tables are not those the other checks read
	}
	for _, iss := range monitor.CRLIssuers {
		r.Add(crlCheck(ctx, db, iss, now))
	}
	if len(certs) == 3 {
		mon := &monitor.CA{Certs: certs, DB: db, Monitor: cfg.Monitor, Now: func() time.Time { return now }}
		r.Add(renewalChecks(ctx, mon, cfg.Monitor, now)...)
	}
}

func loadConfig(o CAOptions) (config.Config, error) { return config.LoadDir(o.Dir, o.ConfigFile) }

func configSource(o CAOptions) string {
	if o.ConfigFile != "" {
		return o.ConfigFile + " parses and agrees with " + o.Dir
	}
	return filepath.Join(o.Dir, config.FileName) + " parses"
}

// keyChecks: the CA keys and the password are private (0600), and the root key is
// where the configuration says (not on a server configured with an offline root).
func keyChecks(dir string, cfg config.Config) []Check {
	var out []Check
	private := func(name, path string, required bool) {
		err := keys.CheckPrivate(path)
		switch {
		case err == nil:
			out = append(out, check(name, OK, "%s is 0600", path))
		case errors.Is(err, fs.ErrNotExist) && !required:
		case errors.Is(err, fs.ErrNotExist):
			out = append(out, check(name, Critical, "%s is missing", path))
		default:
			out = append(out, check(name, Critical, "%v", err))
		}
	}
	private("tls intermediate key permissions", ca.KeyPath(dir, ca.IssuerTLS), true)
	private("nix intermediate key permissions", ca.KeyPath(dir, ca.IssuerNix), true)
	if pw, err := config.SecretPath(dir, cfg.PasswordFile); err != nil {
		out = append(out, check("password file permissions", Info, "not checked: %v", err))
	} else {
		private("password file permissions", pw, true)
	}
	rootKey := ca.KeyPath(dir, ca.IssuerRoot)
	_, statErr := os.Stat(rootKey)
	online := statErr == nil
	carried := filepath.Join(dir, "offline", "root.key")
	_, offErr := os.Stat(carried)
	switch {
	case cfg.OfflineRoot && online:
		out = append(out, check("root key", Critical, "the configuration says offline_root, but the root key is on this server at %s: move it to offline storage", rootKey))
	case cfg.OfflineRoot && offErr == nil:
		out = append(out, check("root key", Warning, "the offline root key is still in the data directory at %s: carry it to offline storage and delete it here", carried))
	case cfg.OfflineRoot:
		out = append(out, check("root key", OK, "offline, not on this server"))
	case online:
		private("root key permissions", rootKey, true)
		out = append(out, check("root key", OK, "online at %s (initialised without --offline-root)", rootKey))
	default:
		out = append(out, check("root key", Warning, "no root key at %s and offline_root is not set: set offline_root if it was carried away", rootKey))
	}
	return out
}

// Store is what the CA's checks read from its database: its schema version and
// clock, and what monitoring reads.
type Store interface {
	monitor.Store
	// SchemaVersion is the version applied and the one this program knows.
	SchemaVersion(ctx context.Context) (applied, known int, err error)
	// Now is the database's clock.
	Now(ctx context.Context) (time.Time, error)
}

// The database nixpki opens implements it.
var _ Store = (*store.DB)(nil)

// databaseChecks: migrated to this program's schema, and a clock that agrees; where
// names the database checked, migrate how to bring its schema up. current says the
// schema is one this program reads.
func databaseChecks(ctx context.Context, db Store, where, migrate string, now time.Time) (out []Check, current bool) {
	applied, known, err := db.SchemaVersion(ctx)
	switch {
	case err != nil:
		return append(out, check("database", Critical, "unreachable: %v", err)), false
	case applied < known:
		return append(out, check("database", Critical, "schema version %d, this nixpki needs %d: %s", applied, known, migrate)), false
	case applied > known:
		out = append(out, check("database", Warning, "schema version %d is newer than this nixpki knows (%d): a newer nixpki migrated it", applied, known))
	default:
		out = append(out, check("database", OK, "reachable, schema version %d (%s)", applied, where))
	}
	dbNow, err := db.Now(ctx)
	if err != nil {
		return append(out, check("clock", Critical, "reading the database's clock: %v", err)), true
	}
	skew := now.Sub(dbNow).Abs()
	switch {
	case skew > skewCrit:
		out = append(out, check("clock", Critical, "this host and the database differ by %s: fix NTP (issuance backdates by a minute only)", skew.Round(time.Second)))
	case skew > skewWarn:
		out = append(out, check("clock", Warning, "this host and the database differ by %s", skew.Round(time.Second)))
	default:
		out = append(out, check("clock", OK, "agrees with the database (within %s)", skewWarn))
	}
	return out, true
}

// crlCheck: the newest CRL built for an intermediate is current. The server rebuilds
// it when fetched after half its validity; relying parties that hold an expired one
// (an offline gate, a cached copy) stop trusting what it covers.
func crlCheck(ctx context.Context, db monitor.Store, issuer string, now time.Time) Check {
	name := issuer + " CRL freshness"
	st, err := db.GetCRL(ctx, issuer)
	switch {
	case err != nil:
		return check(name, Critical, "reading the CRL: %v", err)
	case st.DER == nil:
		return check(name, OK, "none built yet (built at the first fetch of /crl/%s.crl)", issuer)
	case !now.Before(st.NextUpdate):
		return check(name, Critical, "stale: nextUpdate %s has passed (CRL number %d); relying parties holding it refuse what it covers: fetch /crl/%s.crl from serve, or nixpki nix crl --dir, to rebuild it",
			stamp(st.NextUpdate), st.Number, issuer)
	case st.NextUpdate.Sub(now) < st.NextUpdate.Sub(st.ThisUpdate)/4:
		return check(name, Warning, "nextUpdate %s is in %s (CRL number %d): serve rebuilds it when fetched; is anything fetching it?",
			stamp(st.NextUpdate), days(st.NextUpdate.Sub(now)), st.Number)
	}
	return check(name, OK, "CRL number %d, nextUpdate %s", st.Number, stamp(st.NextUpdate))
}

// renewalChecks: every name issued for within monitor.window has a newest
// certificate with more than monitor.renewal_window left; the others are hosts that
// stopped renewing.
func renewalChecks(ctx context.Context, mon *monitor.CA, m config.Monitor, now time.Time) []Check {
	const name = "renewal"
	r, err := mon.Renewal(ctx)
	if err != nil {
		return []Check{check(name, Critical, "reading issued names: %v", err)}
	}
	var late []string
	for _, n := range r.Overdue {
		state := "expires " + stamp(n.NotAfter)
		if !n.NotAfter.After(now) {
			state = "expired " + stamp(n.NotAfter)
		}
		late = append(late, fmt.Sprintf("%s (%s, serial %s)", n.Name, state, n.Serial))
	}
	var out []Check
	if len(late) > 0 {
		out = append(out, check(name, Warning, "%d host name(s) stopped renewing: their newest certificate has less than monitor.renewal_window (%s) left: %s",
			len(late), days(m.RenewalWindow.D()), list(late, 10)))
	} else {
		out = append(out, check(name, OK, "%d name(s) issued for within monitor.window (%s), each renewed with more than %s left", r.Tracked, days(m.Window.D()), days(m.RenewalWindow.D())))
	}
	if r.Dropped > 0 {
		out = append(out, check("renewal tracking", Info, "%d more name(s) beyond monitor.max_names (%d) were not checked", r.Dropped, m.MaxNames))
	}
	return out
}
