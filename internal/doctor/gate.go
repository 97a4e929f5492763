package doctor

import (
	"context"
	"path/filepath"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/gate"
	"nixpki/internal/keys"
)

// CheckGate runs the checks of a gate directory into r: its key's permissions, the
// age of the CRLs it holds against max_crl_age (past it, the gate fails closed), and
// its log.
// settingsFile holds its settings when it was created from one ("": G/config.json).
func CheckGate(ctx context.Context, dir, settingsFile string, now time.Time, r *Report) {
	cfg, err := gate.LoadSettings(dir, settingsFile)
	if err != nil {
		r.Add(check("gate configuration", Critical, "%v", err))
		return
	}
	r.Add(check("gate configuration", OK, "gate %s: settings parse", cfg.Name))
	keyFile := filepath.Join(dir, gate.SecretFile)
	if cfg.KeyFile != "" {
		keyFile = config.Resolve(dir, cfg.KeyFile)
	}
	for name, p := range map[string]string{"gate key permissions": keyFile, "gate password file permissions": config.Resolve(dir, cfg.PasswordFile)} {
		if err := keys.CheckPrivate(p); err != nil {
			r.Add(check(name, Critical, "%v", err))
		} else {
			r.Add(check(name, OK, "%s is 0600", p))
		}
	}
	st, err := gate.ReadStats(ctx, dir, cfg)
	if err != nil {
		r.Add(check("gate database", Critical, "%v", err))
	} else {
		r.Add(gateCRLChecks(st, now)...)
	}
	if v, err := gate.VerifyLog(dir); err != nil {
		r.Add(check("gate log", Critical, "does not verify: %v", err))
	} else {
		r.Add(check("gate log", OK, "verifies: %d entries, signed tree head of %s", v.Head.Size, stamp(v.Head.Time)))
	}
}

// gateCRLChecks: every intermediate's CRL the gate holds is younger than
// max_crl_age, with a margin (a quarter of it, at most a day) to fetch the next.
func gateCRLChecks(st *gate.Stats, now time.Time) []Check {
	const name = "gate CRL age"
	var out []Check
	gating := 0
	for _, c := range st.CRLs {
		if !c.Gating {
			continue
		}
		gating++
		age := now.Sub(c.ThisUpdate)
		if st.MaxCRLAge <= 0 {
			out = append(out, check(name, OK, "CRL of %q issued %s ago (max_crl_age: any age)", c.Issuer, days(age)))
			continue
		}
		left := st.MaxCRLAge - age
		margin := min(st.MaxCRLAge/4, day)
		switch {
		case left <= 0:
			out = append(out, check(name, Critical, "the CRL of %q was issued %s ago, more than max_crl_age %s: the gate refuses every signature under it; push a fresh CRL (nixpki nix push --crl, or the gate's CRL fetch)",
				c.Issuer, days(age), days(st.MaxCRLAge)))
		case left < margin:
			out = append(out, check(name, Warning, "the CRL of %q was issued %s ago: in %s it passes max_crl_age %s and the gate fails closed",
				c.Issuer, days(age), days(left), days(st.MaxCRLAge)))
		default:
			out = append(out, check(name, OK, "CRL of %q issued %s ago; %s until max_crl_age %s", c.Issuer, days(age), days(left), days(st.MaxCRLAge)))
		}
	}
	if gating == 0 {
		out = append(out, check(name, Critical, "the gate holds no CRL of a Nix intermediate: it counts no signature (it fails closed); push one with nixpki nix push --crl"))
	}
	return out
}
