package x509util

import (
	"math/big"
	"strings"
	"testing"
)

func TestParseSerial(t *testing.T) {
	n, _ := new(big.Int).SetString("4a3f00ff", 16)
	for _, s := range []string{"4A3F00FF", "4a:3f:00:ff", "serial=4A3F00FF", "0x4a3f00ff", "004a3f00ff"} {
		got, err := ParseSerial(s)
		if err != nil || got != SerialHex(n) {
			t.Errorf("ParseSerial(%q) = %q, %v", s, got, err)
		}
	}
	for _, s := range []string{"", "xyz", "-1", "0"} {
		if _, err := ParseSerial(s); err == nil {
			t.Errorf("ParseSerial(%q) accepted", s)
		}
	}
}

func FuzzParseSerial(f *testing.F) {
	for _, s := range []string{"4A3F", "4a:3f", "serial=00FF", "0x1", "", "-1", "zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseSerial(s)
		if err != nil {
			return
		}
		if h2, err := ParseSerial(h); err != nil || h2 != h || len(h)%2 != 0 || strings.ToLower(h) != h {
			t.Fatalf("ParseSerial(%q) = %q, not canonical (%q, %v)", s, h, h2, err)
		}
	})
}
