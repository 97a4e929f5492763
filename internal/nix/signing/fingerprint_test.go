package signing

import (
	"strings"
	"testing"

	"nixpki/internal/nix/nixhash"
)

// curlFingerprint is what Nix signs for a path of cache.nixos.org.
const curlFingerprint = "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n"

func TestFingerprint(t *testing.T) {
	h, _ := nixhash.ParseSHA256("sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0")
	sp := "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin"
	refs := []string{
		"yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n",
		"/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12",
		"0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0",
		"6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115",
		"0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", // duplicates collapse, as in Nix's set
	}
	fp, err := Fingerprint(sp, h, 196040, refs)
	if err != nil || fp != curlFingerprint {
		t.Fatalf("Fingerprint = %q, %v", fp, err)
	}
	if fp, err := Fingerprint(sp, h, 1, nil); err != nil || !strings.HasSuffix(fp, ";1;") {
		t.Errorf("no references: %q, %v", fp, err)
	}
	for _, c := range []struct {
		path string
		size uint64
		refs []string
	}{
		{sp, 0, nil},
		{"syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl", 1, nil},
		{sp, 1, []string{"/gnu/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0"}},
		{sp, 1, []string{"0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl;1"}},
		{"/nix/store/../etc/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl", 1, nil},
	} {
		if fp, err := Fingerprint(c.path, h, c.size, c.refs); err == nil {
			t.Errorf("Fingerprint(%q, %d, %q) = %q, want error", c.path, c.size, c.refs, fp)
		}
	}
}
