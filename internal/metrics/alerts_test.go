package metrics

import (
	"os/exec"
	"testing"

	"nixpki/internal/testutil"
)

// TestAlertRules checks docs/alerts.yml with promtool, and that its alerts fire on
// the series nixpki exports (testdata/alerts_test.yml) and not on healthy ones.
func TestAlertRules(t *testing.T) {
	promtool := testutil.NeedTool(t, "promtool")
	for _, args := range [][]string{
		{"check", "rules", "../../docs/alerts.yml"},
		{"test", "rules", "testdata/alerts_test.yml"},
	} {
		if out, err := exec.Command(promtool, args...).CombinedOutput(); err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
}
