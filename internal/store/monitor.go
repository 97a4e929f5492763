package store

import (
	"context"
	"strings"
	"time"
)

// IssuanceCount is how many certificates an issuer signed by one method (cli, acme,
// server, nix-token, ...) and, for ACME, one profile; and how many of them are revoked.
type IssuanceCount struct {
	Issuer, Method, Profile string
	Issued, Revoked         int64
}

// IssuanceCounts counts every certificate recorded, by issuer, method and ACME
// profile (empty for the others). Intermediates (issuer root) are left out.
func (db *DB) IssuanceCounts(ctx context.Context) ([]IssuanceCount, error) {
	return all(ctx, db, nil, func(s scanner) (c IssuanceCount, err error) {
		return c, s.Scan(&c.Issuer, &c.Method, &c.Profile, &c.Issued, &c.Revoked)
	}, `SELECT c.issuer, c.method, COALESCE(o.profile, ''), COUNT(*), COUNT(c.revoked_at)
		FROM certificates c LEFT JOIN acme_orders o ON o.cert_serial = c.serial AND o.cert_serial <> ''
		WHERE c.issuer <> 'root' GROUP BY c.issuer, c.method, COALESCE(o.profile, '')`)
}

// ACMECount is a number of ACME orders (Kind "order": Type is the profile) or of
// answered challenges (Kind "challenge": Type is the challenge type) in one status.
type ACMECount struct {
	Kind, Provisioner, Type, Status string
	N                               int64
}

// ACMECounts counts ACME orders by provisioner, profile and status, and answered
// challenges by provisioner, type and status.
func (db *DB) ACMECounts(ctx context.Context) ([]ACMECount, error) {
	return all(ctx, db, nil, func(s scanner) (c ACMECount, err error) {
		return c, s.Scan(&c.Kind, &c.Provisioner, &c.Type, &c.Status, &c.N)
	}, `SELECT 'order', provisioner, profile, status, COUNT(*) FROM acme_orders GROUP BY provisioner, profile, status
		UNION ALL
		SELECT 'challenge', o.provisioner, a.chall_type, a.chall_status, COUNT(*) FROM acme_authzs a JOIN acme_orders o ON o.id = a.order_id
		WHERE a.chall_type <> '' GROUP BY o.provisioner, a.chall_type, a.chall_status`)
}

// NameExpiry is the newest unrevoked certificate issued for a name.
type NameExpiry struct {
	Name                string
	NotBefore, NotAfter time.Time
	Serial              string
}

// NewestPerName returns, for every name in a certificate the TLS intermediate issued
// by one of methods since since, the unrevoked certificate with the latest notAfter.
// The scan is bounded by since (certificates still valid at since, on the not_after
// index).
func (db *DB) NewestPerName(ctx context.Context, since time.Time, methods []string) ([]NameExpiry, error) {
	q := `SELECT sans, not_before, not_after, serial FROM certificates
		WHERE not_after >= ? AND created_at >= ? AND issuer = 'tls' AND revoked_at IS NULL AND method IN (?` + strings.Repeat(",?", max(len(methods)-1, 0)) + `)`
	args := []any{since.Unix(), since.Unix()}
	for _, m := range methods {
		args = append(args, m)
	}
	newest := map[string]*NameExpiry{}
	err := each(ctx, db, nil, func(s scanner) error {
		var sans, serial string
		var nb, na int64
		if err := s.Scan(&sans, &nb, &na, &serial); err != nil {
			return err
		}
		for _, n := range strings.Split(sans, ",") {
			if n == "" {
				continue
			}
			if e := newest[n]; e == nil || na > e.NotAfter.Unix() {
				newest[n] = &NameExpiry{Name: n, NotBefore: time.Unix(nb, 0).UTC(), NotAfter: time.Unix(na, 0).UTC(), Serial: serial}
			}
		}
		return nil
	}, q, args...)
	if err != nil {
		return nil, err
	}
	out := make([]NameExpiry, 0, len(newest))
	for _, e := range newest {
		out = append(out, *e)
	}
	return out, nil
}

// Now is the database server's clock (for SQLite, the host's), in whole seconds.
func (db *DB) Now(ctx context.Context) (time.Time, error) {
	var s int64
	q := `SELECT CAST(strftime('%s','now') AS INTEGER)`
	if db.dialect == postgresDialect {
		q = `SELECT CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)`
	}
	if err := db.row(ctx, nil, q).Scan(&s); err != nil {
		return time.Time{}, err
	}
	return time.Unix(s, 0).UTC(), nil
}
