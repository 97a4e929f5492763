package narinfo

import (
	"reflect"
	"strings"
	"testing"

	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
)

// A narinfo served by cache.nixos.org (also used by go-nix's tests), with
// its real cache.nixos.org-1 signature and one by a key we don't have.
const curlNarInfo = `StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56.nar.xz
Compression: xz
FileHash: sha256:05ra3y72i3qjri7xskf9qj8kb29r6naqy1sqpbs3azi3xcigmj56
FileSize: 68852
NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115 j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n
Deriver: 5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv
Sig: cache.nixos.org-1:TsTTb3WGTZKphvYdBHXwo6weVILmTytUjLB+vcX89fOjjRicCHmKA4RCPMVLkj6TMJ4GMX3HPVWRdD1hkeKZBQ==
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==
`

const curlFingerprint = "1;/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin;sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0;196040;/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0,/nix/store/6w8g7njm4mck5dmjxws0z1xnrxvl81xa-glibc-2.34-115,/nix/store/j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12,/nix/store/yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n"

// cacheNixosOrgKey is the public key of cache.nixos.org.
const cacheNixosOrgKey = "cache.nixos.org-1:6NCHdD59X431o0gWypbMrAURkbJ16ZPMQFGspcDShjY="

func parseNI(t testing.TB, s string) *NarInfo {
	t.Helper()
	ni, err := Parse(strings.NewReader(s), storepath.DefaultStoreDir)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, s)
	}
	return ni
}

func TestNarInfoKnownAnswer(t *testing.T) {
	ni := parseNI(t, curlNarInfo)
	if ni.StorePath != "/nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin" || ni.NarSize != 196040 ||
		ni.FileSize != 68852 || ni.FileHash == nil || len(ni.References) != 4 || len(ni.Sigs) != 2 ||
		ni.Deriver != "5rwxzi7pal3qhpsyfc16gzkh939q1np6-curl-7.82.0.drv" || ni.Compression != "xz" || ni.ContentAddressed() {
		t.Fatalf("parsed %+v", ni)
	}
	fp, err := ni.Fingerprint()
	if err != nil || fp != curlFingerprint {
		t.Fatalf("Fingerprint() = %q, %v\nwant %q", fp, err, curlFingerprint)
	}
	pub, _ := signing.ParsePublicKey([]byte(cacheNixosOrgKey))
	if !pub.Verify(fp, ni.Sigs[0]) {
		t.Error("cache.nixos.org's signature does not verify")
	}
	if pub.Verify(fp, ni.Sigs[1]) {
		t.Error("test1's signature verifies with cache.nixos.org's key")
	}
	out, err := ni.MarshalText()
	if err != nil || string(out) != curlNarInfo {
		t.Errorf("MarshalText = %v\n%s", err, out)
	}
}

func TestNarInfoNormalisation(t *testing.T) {
	// Nix accepts other hash notations, an absent Compression (bzip2),
	// "unknown-deriver", runs of spaces between references, unknown keys
	// and duplicate Sig lines, and writes them back canonically.
	in := `StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/x.nar.bz2
NarHash: sha256-` + "0QRDK8y6h9qwqKIRmawBEVtyNCjIrlW0wlyRNKowxbQ=" + `
NarSize: 0196040
References: yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n  0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0
Deriver: unknown-deriver
System: x86_64-linux
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==
CA: fixed:r:sha256:d104432bccba87dab0a8a21199ac01115b723428c8ae55b4c25c9134aa30c5b4
`
	want := `StorePath: /nix/store/syd87l2rxw8cbsxmxl853h0r6pdwhwjr-curl-7.82.0-bin
URL: nar/x.nar.bz2
Compression: bzip2
NarHash: sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i
NarSize: 196040
References: 0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0 yxvjs9drzsphm9pcf42a4byzj1kb9m7k-openssl-1.1.1n
Sig: test1:519iiVLx/c4Rdt5DNt6Y2Jm6hcWE9+XY69ygiWSZCNGVcmOcyL64uVAJ3cV8vaTusIZdbTnYo9Y7vDNeTmmMBQ==
CA: fixed:r:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i
System: x86_64-linux
`
	ni := parseNI(t, in)
	out, err := ni.MarshalText()
	if err != nil || string(out) != want {
		t.Fatalf("MarshalText = %v\n%s\nwant\n%s", err, out, want)
	}
	if !reflect.DeepEqual(parseNI(t, string(out)), ni) {
		t.Error("parse(marshal(x)) != x")
	}
	if !ni.ContentAddressed() {
		t.Error("ContentAddressed() = false")
	}
	// Empty References are written as Nix does, with the trailing space.
	ni.References = nil
	out, _ = ni.MarshalText()
	if !strings.Contains(string(out), "\nReferences: \n") {
		t.Errorf("empty References written as:\n%s", out)
	}
}

func TestNarInfoRejects(t *testing.T) {
	good := curlNarInfo
	replace := func(old, new string) string {
		if !strings.Contains(good, old) {
			t.Fatalf("test bug: %q not in sample", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	for _, c := range []struct {
		name, in, errPart string
	}{
		{"no final newline", strings.TrimSuffix(good, "\n"), "final newline"},
		{"no StorePath", replace("StorePath: ", "X-StorePath: "), "StorePath missing"},
		{"no URL", replace("URL: ", "X-URL: "), "URL missing"},
		{"no NarHash", replace("NarHash: ", "X-NarHash: "), "NarHash missing"},
		{"no NarSize", replace("NarSize: ", "X-NarSize: "), "NarSize missing"},
		{"zero NarSize", replace("NarSize: 196040", "NarSize: 0"), "NarSize missing or zero"},
		{"negative NarSize", replace("NarSize: 196040", "NarSize: -1"), "NarSize"},
		{"store path elsewhere", replace("/nix/store/syd", "/gnu/store/syd"), "not in the Nix store"},
		{"store path subdir", replace("curl-7.82.0-bin\n", "curl-7.82.0-bin/bin\n"), "StorePath"},
		{"ref with slash", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl/../x"), "illegal character"},
		{"ref dotdot", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", ".."), "too short"},
		{"ref dotdot name", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "0jqd0rlxzra1rs38rdxl43yh6rxchgc6-.."), "must not start"},
		{"ref NUL", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "0jqd0rlxzra1rs38rdxl43yh6rxchgc6-cu\x00rl"), "control character"},
		{"ref full path", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "/nix/store/0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0"), "illegal"},
		{"ref bad hash", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "ejqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0"), "nixbase32"},
		{"duplicate ref", replace("0jqd0rlxzra1rs38rdxl43yh6rxchgc6-curl-7.82.0", "j5jxw3iy7bbz4a57fh9g2xm2gxmyal8h-zlib-1.2.12"), "duplicate reference"},
		{"deriver slash", replace("Deriver: 5rwx", "Deriver: /nix/store/5rwx"), "Deriver"},
		{"bad sig", replace("Sig: test1:", "Sig: test1"), "Sig"},
		{"md5 NarHash", replace("NarHash: sha256:1b4sb93wp679q4zx9k1ignby1yna3z7c4c2ri3wphylbc2dwsys0", "NarHash: md5:d41d8cd98f00b204e9800998ecf8427e"), "want sha256"},
		{"bad NarHash", replace("NarHash: sha256:1b4", "NarHash: sha256:eb4"), "NarHash"},
		{"untyped NarHash", replace("NarHash: sha256:", "NarHash: "), "algorithm"},
		{"duplicate key", replace("URL: ", "URL: a\nURL: "), "duplicate URL"},
		{"no space after colon", replace("URL: ", "URL:"), "Key: value"},
		{"CR", replace("Compression: xz\n", "Compression: xz\r\n"), "control character"},
		{"empty key", replace("URL: ", ": x\nURL: "), "invalid key"},
		{"bad CA", replace("Deriver:", "CA: fixed:sha256:abc\nDeriver:"), "CA"},
		{"text CA sha1", replace("Deriver:", "CA: text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs\nDeriver:"), "sha256"},
		{"URL with space", replace("URL: nar/", "URL: nar /"), "no spaces"},
	} {
		_, err := Parse(strings.NewReader(c.in), storepath.DefaultStoreDir)
		if err == nil || !strings.Contains(err.Error(), c.errPart) {
			t.Errorf("%s: error = %v, want one mentioning %q", c.name, err, c.errPart)
		}
	}
	big := good + "X: " + strings.Repeat("a", MaxSize) + "\n"
	if _, err := Parse(strings.NewReader(big), storepath.DefaultStoreDir); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized narinfo: %v", err)
	}
	if _, err := Parse(strings.NewReader(good), "nix/store"); err == nil {
		t.Error("relative store dir accepted")
	}
}
