package gate

import (
	"strings"
	"testing"

	"nixpki/internal/nix/storepath"
)

// An admission's writes are committed together or not at all: when a write fails
// (here the admission of a path waiting for the one pushed, in the cascade), the
// pushed path is not admitted either, and the push can be made again.
func TestFailedAdmissionCommitsNothing(t *testing.T) {
	tg := newTestGate(t, func(c *Config) { c.Thresholds = []Threshold{{Pattern: "*-lib-*", SigsNeeded: 2}} })
	alice := tg.pki.member(t, "alice-1", "alice", []string{"host-a"}, scopeAny, nil)
	bob := tg.pki.member(t, "bob-1", "bob", []string{"host-*"}, scopeAny, nil)
	tg.enroll(t, alice)
	tg.enroll(t, bob)
	lib, app := storePath("lib-1.0"), storePath("app")
	libUp := upload{path: lib, contents: "lib", signers: []member{alice}}
	if _, s, b := tg.push(t, libUp); s != 403 || !strings.Contains(b, "pending") {
		t.Fatalf("lib signed by alice alone: %d %s", s, b)
	}
	if _, s, b := tg.push(t, upload{path: app, contents: "app", refs: []string{lib}, signers: []member{alice}}); s != 403 || !strings.Contains(b, "waiting for its references") {
		t.Fatalf("app over pending lib: %d %s", s, b)
	}
	ctx := t.Context()
	const trigger = `CREATE TRIGGER fail_app BEFORE UPDATE ON paths WHEN NEW.store_path = '` + "%s" + `' AND NEW.state = 'admitted'
		BEGIN SELECT RAISE(ABORT, 'injected failure'); END`
	if _, err := tg.db.sql.DB.ExecContext(ctx, strings.Replace(trigger, "%s", app, 1)); err != nil {
		t.Fatal(err)
	}
	libUp.signers = []member{bob}
	if _, s, b := tg.push(t, libUp); s != 500 {
		t.Fatalf("lib signed by bob, app's admission failing: %d %s", s, b)
	}
	for _, p := range []string{lib, app} {
		if _, ok := tg.served(t, p); ok {
			t.Errorf("%s served after a failed admission", p)
		}
		cands, err := tg.db.candidates(ctx, storepath.HashPart(p))
		if err != nil || len(cands) != 1 || cands[0].State != StatePending {
			t.Errorf("%s after a failed admission: %+v %v, want it pending as before", p, cands, err)
		}
	}
	if _, err := tg.db.sql.DB.ExecContext(ctx, `DROP TRIGGER fail_app`); err != nil {
		t.Fatal(err)
	}
	if _, s, b := tg.push(t, libUp); s != 200 {
		t.Fatalf("lib signed by bob again: %d %s", s, b)
	}
	for _, p := range []string{lib, app} {
		if _, ok := tg.served(t, p); !ok {
			t.Errorf("%s not served once the failure is gone", p)
		}
	}
}
