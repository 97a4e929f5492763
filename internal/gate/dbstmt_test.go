package gate

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"
)

// Statements are prepared once and reused; a statement that does not prepare fails
// the call (Exec, Query and QueryRow alike) and is not kept.
func TestStmtDB(t *testing.T) {
	d, err := openDB(filepath.Join(t.TempDir(), "gate.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := context.Background()
	rec := narRec{URL: "nar/x.nar.zst", Compression: "zstd", FileSize: 10, NarSize: 20, ReceivedAt: time.Unix(1000, 0)}
	for i := 0; i < 3; i++ {
		rec.URL = "nar/" + string(rune('a'+i)) + ".nar.zst"
		if err := d.insertNAR(ctx, rec); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := d.getNAR(ctx, rec.URL); err != nil || !ok || got.URL != rec.URL || got.NarSize != 20 {
			t.Fatalf("getNAR %s: %+v %v %v", rec.URL, got, ok, err)
		}
	}
	if n, err := d.stagingBytes(ctx); err != nil || n != 30 {
		t.Fatalf("stagingBytes: %d %v, want 30", n, err)
	}
	// openDB prepared the statements of state changes (getNAR among them).
	if n, want := len(d.sql.stmts), len(changeStmts)+2; n != want {
		t.Errorf("%d statements kept, want %d: those prepared when opening and 2 more distinct queries run 3 times", n, want)
	}
	const bad = "SELECT nonsense FROM nowhere"
	if _, err := d.sql.ExecContext(ctx, bad); err == nil {
		t.Error("Exec of a bad statement succeeded")
	}
	if _, err := d.sql.QueryContext(ctx, bad); err == nil {
		t.Error("Query of a bad statement succeeded")
	}
	var x int
	if err := d.sql.QueryRowContext(ctx, bad).Scan(&x); err == nil {
		t.Error("QueryRow of a bad statement succeeded")
	}
	if _, ok := d.sql.stmts[bad]; ok {
		t.Error("a statement that failed to prepare was kept")
	}
	// Past maxStmts distinct texts, queries still run, unprepared.
	for i := 0; i < maxStmts+10; i++ {
		if err := d.sql.QueryRowContext(ctx, fmt.Sprintf("SELECT %d", i)).Scan(&x); err != nil || x != i {
			t.Fatalf("SELECT %d: %d %v", i, x, err)
		}
	}
	if n := len(d.sql.stmts); n != maxStmts {
		t.Errorf("%d statements kept, want at most %d", n, maxStmts)
	}
}
