package acme

import "testing"

func TestReverseName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.5":   "5.2.0.192.in-addr.arpa",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa",
	} {
		if got := reverseName(in); got != want {
			t.Errorf("reverseName(%s) = %s, want %s", in, got, want)
		}
	}
}
