package acme

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"nixpki/internal/config"
	"nixpki/internal/testutil"
)

// TestStateChangeLogs: each state change of an issuance is one structured log line,
// and no challenge token or key authorization is ever logged.
func TestStateChangeLogs(t *testing.T) {
	var buf testutil.Buffer
	e := newEnv(t, func(_ *config.Config, o *Options) { o.Log = slog.New(slog.NewJSONHandler(&buf, nil)) })
	cl := e.client("acme")
	e.issue(cl, http01, "logged.test")
	// The validation's outcome is logged after it is recorded, in the background.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "acme challenge valid") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	out := buf.String()
	for _, msg := range []string{"acme account created", "acme order created", "acme challenge started", "acme challenge valid", "acme certificate issued"} {
		if n := strings.Count(out, `"msg":"`+msg+`"`); n != 1 {
			t.Errorf("%d log lines %q, want 1:\n%s", n, msg, out)
		}
	}
	if !strings.Contains(out, `"identifier":"logged.test"`) {
		t.Errorf("the challenge lines do not name the identifier:\n%s", out)
	}
	e.http01.Range(func(token, keyAuth any) bool {
		if strings.Contains(out, token.(string)) || strings.Contains(out, keyAuth.(string)) {
			t.Errorf("a challenge token or key authorization was logged:\n%s", out)
		}
		return true
	})
}
