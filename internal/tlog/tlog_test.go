package tlog

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func leaves(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		out[i] = LeafHash([]byte{byte(i)})
	}
	return out
}

// RFC 9162 §2.1.1 test vectors are not published; these are the roots of the
// well-known CT test tree (leaves "", 0x00, 0x10, 0x2021, …) from the Go and C++
// implementations (certificate-transparency-go merkletree tests).
func TestKnownRoots(t *testing.T) {
	inputs := [][]byte{
		{}, {0x00}, {0x10}, {0x20, 0x21}, {0x30, 0x31}, {0x40, 0x41, 0x42, 0x43},
		{0x50, 0x51, 0x52, 0x53, 0x54, 0x55, 0x56, 0x57},
		{0x60, 0x61, 0x62, 0x63, 0x64, 0x65, 0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f},
	}
	want := []string{
		"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
		"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
		"aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
		"d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
		"4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
		"76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
		"ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
		"5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
	}
	var fr frontier
	var ls []Hash
	for i, in := range inputs {
		l := LeafHash(in)
		ls = append(ls, l)
		fr.push(l)
		if r := fr.root(); hex.EncodeToString(r[:]) != want[i] {
			t.Errorf("root of %d leaves (frontier) = %x, want %s", i+1, r, want[i])
		}
		if got := RootOf(ls); got != fr.root() {
			t.Errorf("RootOf(%d) disagrees with the frontier", i+1)
		}
	}
	if RootOf(nil) != Hash(sha256.Sum256(nil)) {
		t.Error("empty root")
	}
}

func TestProofs(t *testing.T) {
	ls := leaves(37)
	for n := uint64(1); n <= uint64(len(ls)); n++ {
		root := RootOf(ls[:n])
		for i := uint64(0); i < n; i++ {
			p, err := InclusionProof(ls, i, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyInclusion(ls[i], i, n, p, root); err != nil {
				t.Fatalf("inclusion %d/%d: %v", i, n, err)
			}
			if err := VerifyInclusion(ls[(i+1)%n], i, n, p, root); err == nil && n > 1 {
				t.Fatalf("inclusion %d/%d verified for another leaf", i, n)
			}
		}
		for m := uint64(1); m <= n; m++ {
			p, err := ConsistencyProof(ls, m, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := VerifyConsistency(m, n, RootOf(ls[:m]), root, p); err != nil {
				t.Fatalf("consistency %d→%d: %v", m, n, err)
			}
			if m < n {
				bad := RootOf(append(append([]Hash(nil), ls[:m-1]...), LeafHash([]byte("x"))))
				if err := VerifyConsistency(m, n, bad, root, p); err == nil {
					t.Fatalf("consistency %d→%d accepted a rewritten old tree", m, n)
				}
			}
		}
	}
}

func newKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeLog(t *testing.T, n int) (string, ed25519.PrivateKey) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "log")
	key := newKey(t)
	if err := Create(dir, "host-a", key); err != nil {
		t.Fatal(err)
	}
	l, err := Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 0; i < n; i++ {
		if _, _, err := l.Append("admission", map[string]any{"path": fmt.Sprintf("/nix/store/p%d", i), "n": i}); err != nil {
			t.Fatal(err)
		}
	}
	return dir, key
}

func pubOf(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }

func TestAppendVerifyReopen(t *testing.T) {
	dir, key := makeLog(t, 9)
	v, err := Verify(dir, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Records) != 9 || v.Head.Size != 9 || v.Head.Root != RootOf(v.Leaves()) {
		t.Fatalf("verified %d records, head %+v", len(v.Records), v.Head)
	}
	old := v.Records[3].Head
	l, err := Open(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	idx, h, err := l.Append("crl", map[string]string{"number": "7"})
	if err != nil || idx != 9 || h.Size != 10 {
		t.Fatalf("append after reopen: %d %+v %v", idx, h, err)
	}
	p, _ := l.InclusionProof(idx, h.Size)
	if err := VerifyInclusion(LeafHash(mustMarshal(t, dir, idx)), idx, h.Size, p, h.Root); err != nil {
		t.Fatal(err)
	}
	l.Close()
	v, err = Verify(dir, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckExtends(old, pubOf(key)); err != nil {
		t.Fatalf("extends an older head: %v", err)
	}
	if _, err := Verify(dir, pubOf(newKey(t))); err == nil {
		t.Fatal("verified with another key")
	}
}

func mustMarshal(t *testing.T, dir string, idx uint64) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, EntriesFile))
	if err != nil {
		t.Fatal(err)
	}
	line := bytes.Split(data, []byte{'\n'})[idx]
	e, _, _ := bytes.Cut(line, []byte{'\t'})
	return e
}

// Changing any single byte of the entries file makes Verify fail naming the entry
// whose record holds the byte (or an earlier one).
func TestEveryByteAltered(t *testing.T) {
	dir, key := makeLog(t, 5)
	path := filepath.Join(dir, EntriesFile)
	orig, _ := os.ReadFile(path)
	lineOf := func(off int) int { return bytes.Count(orig[:off], []byte{'\n'}) }
	for off := 0; off < len(orig); off++ {
		mod := bytes.Clone(orig)
		mod[off] ^= 0x01
		if mod[off] == orig[off] {
			continue
		}
		os.WriteFile(path, mod, 0o600)
		_, err := Verify(dir, pubOf(key))
		if err == nil {
			t.Fatalf("byte %d (%q→%q) altered, Verify passed", off, orig[off], mod[off])
		}
		want := fmt.Sprintf("entry %d", lineOf(off))
		if orig[off] == '\n' && lineOf(off) == 4 {
			want = "entry 4" // the last record loses its end
		}
		if !strings.Contains(err.Error(), want) && !strings.Contains(err.Error(), fmt.Sprintf("entry %d", lineOf(off)+1)) {
			t.Fatalf("byte %d altered: %v; want it to name %s", off, err, want)
		}
	}
	os.WriteFile(path, orig, 0o600)
	if _, err := Verify(dir, pubOf(key)); err != nil {
		t.Fatal(err)
	}
}

func TestReorderDeleteTruncate(t *testing.T) {
	dir, key := makeLog(t, 6)
	path := filepath.Join(dir, EntriesFile)
	orig, _ := os.ReadFile(path)
	lines := bytes.SplitAfter(orig, []byte{'\n'})
	lines = lines[:len(lines)-1]
	join := func(ls ...[]byte) []byte { return bytes.Join(ls, nil) }
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"swap 1 and 2", join(lines[0], lines[2], lines[1], lines[3], lines[4], lines[5]), "entry 1"},
		{"delete 3", join(lines[0], lines[1], lines[2], lines[4], lines[5]), "entry 3"},
		{"delete last", join(lines[:5]...), "entries 5 to 5 were deleted"},
		{"delete all", nil, "entries 0 to 5 were deleted"},
		{"duplicate 0", join(lines[0], lines[0], lines[1]), "entry 1"},
	}
	for _, c := range cases {
		os.WriteFile(path, c.data, 0o600)
		_, err := Verify(dir, pubOf(key))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
	// Cutting the log and the head file back to an older, genuine state passes the
	// files' own check but not against a head kept elsewhere.
	os.WriteFile(path, join(lines[:3]...), 0o600)
	old, _ := ParseHead(bytes.TrimSpace(bytes.SplitN(lines[5], []byte{'\t'}, 2)[1]))
	os.WriteFile(filepath.Join(dir, HeadFile), append(bytes.TrimSpace(bytes.SplitN(lines[2], []byte{'\t'}, 2)[1]), '\n'), 0o600)
	v, err := Verify(dir, pubOf(key))
	if err != nil {
		t.Fatalf("a genuine prefix: %v", err)
	}
	if err := v.CheckExtends(old, pubOf(key)); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("CheckExtends of a cut-back log: %v", err)
	}
}

func TestTornTailRepaired(t *testing.T) {
	dir, key := makeLog(t, 3)
	path := filepath.Join(dir, EntriesFile)
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"type":"admission","time":"2025-01-0`)
	f.Close()
	if _, err := Verify(dir, pubOf(key)); err == nil || !strings.Contains(err.Error(), "entry 3") {
		t.Fatalf("torn tail: %v", err)
	}
	l, err := Open(dir, key)
	if err != nil {
		t.Fatalf("Open did not repair a torn tail: %v", err)
	}
	if _, _, err := l.Append("x", 1); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if v, err := Verify(dir, pubOf(key)); err != nil || len(v.Records) != 4 {
		t.Fatalf("after repair: %v", err)
	}
}

func TestHeadFileTampered(t *testing.T) {
	dir, key := makeLog(t, 2)
	hp := filepath.Join(dir, HeadFile)
	b, _ := os.ReadFile(hp)
	h, _ := ParseHead(bytes.TrimSpace(b))
	h.Size = 9
	os.WriteFile(hp, h.marshal(), 0o600)
	if _, err := Verify(dir, pubOf(key)); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("forged head: %v", err)
	}
}

func FuzzVerify(f *testing.F) {
	key := ed25519.NewKeyFromSeed(make([]byte, 32))
	dir := f.TempDir()
	Create(filepath.Join(dir, "seed"), "g", key)
	l, _ := Open(filepath.Join(dir, "seed"), key)
	l.Append("a", "x")
	l.Append("b", []int{1})
	l.Close()
	data, _ := os.ReadFile(filepath.Join(dir, "seed", EntriesFile))
	f.Add(data)
	f.Add([]byte("{}\t{}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		v, err := verifyRecords(bytes.NewReader(data), key.Public().(ed25519.PublicKey), "g")
		if err != nil {
			return
		}
		// Whatever verifies was signed by the key: only prefixes of what it signed.
		for i, r := range v.Records {
			if r.Head.Size != uint64(i+1) || r.Head.Verify(key.Public().(ed25519.PublicKey)) != nil {
				t.Fatalf("record %d verified with head %+v", i, r.Head)
			}
		}
	})
}
