package signing

import (
	"strings"
	"testing"

	"nixpki/internal/testutil"
)

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

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above
// (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	for _, target := range []string{"FuzzParseSecretKey", "FuzzParsePublicKey", "FuzzParseSignature"} {
		testutil.WriteFuzzCorpus(t, target, "string", keySeeds())
	}
}
