package narinfo

import (
	"bytes"
	"strings"
	"testing"

	"nixpki/internal/nix/storepath"
	"nixpki/internal/testutil"
)

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

func FuzzParseNarInfo(f *testing.F) {
	for _, s := range narInfoSeeds() {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		ni, err := Parse(bytes.NewReader(data), storepath.DefaultStoreDir)
		if err != nil {
			return
		}
		out, err := ni.MarshalText()
		if err != nil {
			t.Fatalf("MarshalText of a parsed narinfo: %v", err)
		}
		ni2, err := Parse(bytes.NewReader(out), storepath.DefaultStoreDir)
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

// TestWriteFuzzCorpus regenerates testdata/fuzz from the seeds above
// (NIXPKI_WRITE_FUZZ_CORPUS=1 go test -run TestWriteFuzzCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	testutil.WriteFuzzCorpus(t, "FuzzParseNarInfo", "[]byte", narInfoSeeds())
}
