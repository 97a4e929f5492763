package nixkey

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Seeds for the fuzz targets. They are added with f.Add and also stored
// under testdata/fuzz/<Target>/ (regenerate with NIXKEY_WRITE_FUZZ_CORPUS=1
// go test -run TestWriteFuzzCorpus).

func narSeeds() [][]byte {
	seeds := [][]byte{sampleNAR(), nar(regular("x")), nar(symlink("/nix/store")), nar(directory())}
	for _, c := range badNARs() {
		seeds = append(seeds, c.data)
	}
	return seeds
}

func narInfoSeeds() []string {
	return []string{
		curlNarInfo,
		strings.Replace(curlNarInfo, "Sig: test1", "CA: fixed:r:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i\nSig: test1", 1),
		"StorePath: /nix/store/qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep\nURL: nar/1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8.nar\nCompression: none\nFileHash: sha256:1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8\nFileSize: 120\nNarHash: sha256:1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8\nNarSize: 120\nReferences: \nDeriver: iwi0bq47c0m445h3bhficd60pszw92f9-dep.drv\n",
		"StorePath: /nix/store/qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep\nURL: x\nNarHash: sha256-0QRDK8y6h9qwqKIRmawBEVtyNCjIrlW0wlyRNKowxbQ=\nNarSize: 1\nReferences: ../x\n",
		"StorePath: /nix/store/qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep\nURL: x\nNarHash: sha256-0QRDK8y6h9qwqKIRmawBEVtyNCjIrlW0wlyRNKowxbQ=\nNarSize: 1\nDeriver: a/b\x00\n",
		"StorePath: /nix/store/qc2w6f3wzpgjk5k38xzc3irv3mgdghl9-dep\nURL: x\nNarHash: sha256:1mipikk4wn2q5x555z8k48k2zb6vf5za8cy6i7wwh5cswyrcwpg8\nNarSize: 1\nSystem: x86_64-linux\n",
		"StorePath:\n",
		"",
	}
}

func keySeeds() []string {
	return []string{
		cacheNixosOrgKey,
		cacheNixosOrgKey + "\n",
		"test-1:T6xBf57Ea81obip/uCLoP0m0/uXwxlmhzDFJrxE+41b9g+mtehcIy77C8BQy/HVIssYRNsUiG38gLrKxozQEqg==",
		"test-1:/YPprXoXCMu+wvAUMvx1SLLGETbFIht/IC6ysaM0BKo",
		"test-1:6HyGYXMlNynrhjhcyPaIv2NaSwUlef4z6Z01npUZ1pJ8qbp/k4ge8GXMLOouASSvVagY8oGCYxvbwHcapGq1DQ==",
		"a b:AAAA",
		":AAAA",
		"name:",
		"no-colon",
		"k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n",
	}
}

func base32Seeds() []string {
	return []string{"", "00", "7z", "0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73", "143xibwh31h9bvxzalr0sjvbbvpa6ffs", "zz", "e0", "0"}
}

func hashSeeds() []string {
	return []string{
		"sha256:0mdqa9w1p6cmli6976v4wi0sw9r4p5prkj7lzfd1877wk11c9c73",
		"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		"sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
		"sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
		"fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs",
		"text:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2ql616i", // 44 chars, decodes to 33 bytes
	}
}

func FuzzNARReader(f *testing.F) {
	for _, s := range narSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, out, err := rewriteNAR(data)
		if err != nil {
			if strings.Contains(err.Error(), "NARWriter refused") {
				t.Fatal(err)
			}
			return
		}
		// A NAR the reader accepts is canonical: rewriting it gives
		// the same bytes, and reading it again the same entries.
		if !bytes.Equal(out, data) {
			t.Fatalf("round trip changed the archive:\n%x\n%x", data, out)
		}
		entries2, _, err := rewriteNAR(out)
		if err != nil || !reflect.DeepEqual(entries, entries2) {
			t.Fatalf("re-reading: %v\n%v\n%v", err, entries, entries2)
		}
		if _, size, err := CheckNAR(bytes.NewReader(data)); err != nil || size != uint64(len(data)) {
			t.Fatalf("CheckNAR = %d, %v", size, err)
		}
	})
}

func FuzzParseNarInfo(f *testing.F) {
	for _, s := range narInfoSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := ParseNarInfo(bytes.NewReader(data), DefaultStoreDir)
		if err != nil {
			return
		}
		out, err := ni.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of a parsed narinfo: %v", err)
		}
		ni2, err := ParseNarInfo(bytes.NewReader(out), DefaultStoreDir)
		if err != nil {
			t.Fatalf("re-parsing:\n%s\n%v", out, err)
		}
		out2, _ := ni2.MarshalText()
		if !bytes.Equal(out, out2) {
			t.Fatalf("marshal not stable:\n%s\n%s", out, out2)
		}
		if _, err := ni.Fingerprint(); err != nil {
			t.Fatalf("Fingerprint of a parsed narinfo: %v", err)
		}
		if ni.ContentAddressed() {
			_ = ni.CheckContentAddress()
		}
	})
}

// fuzzKeyLike checks parse → String → parse for one of the key formats.
func fuzzKeyLike[T interface{ String() string }](t *testing.T, s string, parse func(string) (T, error)) {
	k, err := parse(s)
	if err != nil {
		return
	}
	text := k.String()
	k2, err := parse(text)
	if err != nil {
		t.Fatalf("re-parsing %q: %v", text, err)
	}
	if k2.String() != text {
		t.Fatalf("not stable: %q → %q", text, k2.String())
	}
	if name, _, _ := strings.Cut(s, ":"); !strings.HasPrefix(text, name+":") {
		t.Fatalf("name changed: %q → %q", s, text)
	}
}

func FuzzParseSecretKey(f *testing.F) {
	for _, s := range keySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fuzzKeyLike(t, s, func(s string) (SecretKey, error) { return ParseSecretKey([]byte(s)) })
		if k, err := ParseSecretKey([]byte(s)); err == nil {
			fp := "1;x"
			if !k.Public().Verify(fp, k.Sign(fp)) {
				t.Fatal("a parsed secret key makes signatures its public key rejects")
			}
		}
	})
}

func FuzzParsePublicKey(f *testing.F) {
	for _, s := range keySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fuzzKeyLike(t, s, func(s string) (PublicKey, error) { return ParsePublicKey([]byte(s)) })
		if k, err := ParsePublicKey([]byte(s)); err == nil {
			k.Verify("1;x", Signature{Name: k.Name, Sig: make([]byte, 64)})
		}
	})
}

func FuzzParseSignature(f *testing.F) {
	for _, s := range keySeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fuzzKeyLike(t, s, ParseSignature)
	})
}

func FuzzDecodeBase32(f *testing.F) {
	for _, s := range base32Seeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		// Any bytes encode and decode back.
		raw := []byte(s)
		if got, err := DecodeBase32(EncodeBase32(raw)); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("round trip of %x: %x, %v", raw, got, err)
		}
		// A string that decodes is the canonical encoding.
		b, err := DecodeBase32(s)
		if err != nil {
			return
		}
		if enc := EncodeBase32(b); enc != s {
			t.Fatalf("DecodeBase32(%q) = %x, which encodes as %q", s, b, enc)
		}
		// And as a hash, if it has a hash's length.
		if len(b) == 32 {
			h, err := ParseSHA256("sha256:" + s)
			if err != nil || !bytes.Equal(h[:], b) {
				t.Fatalf("ParseSHA256(sha256:%s) = %x, %v", s, h, err)
			}
		}
	})
}

func FuzzParseSHA256(f *testing.F) {
	for _, s := range hashSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if h, err := ParseSHA256(s); err == nil {
			// The input is h in one of the notations, exactly.
			sri := FormatSHA256SRI(h)
			if s != FormatSHA256(h) && !strings.EqualFold(s, "sha256:"+hex.EncodeToString(h[:])) &&
				s != "sha256:"+sri[len("sha256-"):] && s != sri && s != strings.TrimRight(sri, "=") {
				t.Fatalf("ParseSHA256(%q) = %x, which is written differently", s, h)
			}
			if h2, err := ParseSHA256(FormatSHA256(h)); err != nil || h2 != h {
				t.Fatalf("nix32 round trip of %q", s)
			}
			if h2, err := ParseSHA256(FormatSHA256SRI(h)); err != nil || h2 != h {
				t.Fatalf("SRI round trip of %q", s)
			}
		}
		if ca, err := ParseContentAddress(s); err == nil {
			ca2, err := ParseContentAddress(ca.String())
			if err != nil || ca2.String() != ca.String() {
				t.Fatalf("content address round trip of %q: %v", s, err)
			}
		}
	})
}

// TestWriteFuzzCorpus writes the seeds above as corpus files. It runs only
// when NIXKEY_WRITE_FUZZ_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("NIXKEY_WRITE_FUZZ_CORPUS") != "1" {
		t.Skip("a tool, not a test (never skipped as a check in CI): set NIXKEY_WRITE_FUZZ_CORPUS=1 to regenerate testdata/fuzz seeds")
	}
	write := func(target string, i int, typ string, v string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := fmt.Sprintf("go test fuzz v1\n%s(%q)\n", typ, v)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i, s := range narSeeds() {
		write("FuzzNARReader", i, "[]byte", string(s))
	}
	for i, s := range narInfoSeeds() {
		write("FuzzParseNarInfo", i, "[]byte", s)
	}
	for i, s := range keySeeds() {
		write("FuzzParseSecretKey", i, "string", s)
		write("FuzzParsePublicKey", i, "string", s)
		write("FuzzParseSignature", i, "string", s)
	}
	for i, s := range base32Seeds() {
		write("FuzzDecodeBase32", i, "string", s)
	}
	for i, s := range hashSeeds() {
		write("FuzzParseSHA256", i, "string", s)
	}
}
