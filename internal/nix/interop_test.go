package nix_test

// Cross-checks against the real Nix binaries (Nix 2.8 as root, no daemon).
// They are skipped when Nix is missing, unless CI=true.

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"nixpki/internal/nix/nar"
	"nixpki/internal/nix/narinfo"
	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/nix/storepath"
	"nixpki/internal/testutil"
)

// nixEnv runs Nix commands with an isolated configuration and cache.
type nixEnv struct {
	*testutil.Nix
	t *testing.T
}

func newNixEnv(t *testing.T) *nixEnv {
	t.Helper()
	n := testutil.NewNix(t)
	testutil.NeedTool(t, "nix-instantiate")
	return &nixEnv{Nix: n, t: t}
}

// nonce makes derivations unique to one test run.
func nonce(t *testing.T) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return strings.NewReplacer("/", "-").Replace(t.Name()) + "-" + hex.EncodeToString(b[:])
}

// buildClosure builds "app", which refers to "dep", and returns app's path.
func (n *nixEnv) buildClosure() string {
	return n.Build(fmt.Sprintf(`
let dep = derivation { name = "dep"; system = builtins.currentSystem;
                       builder = "/bin/sh"; args = [ "-c" "echo dep %[1]s > $out" ]; };
in derivation { name = "app"; system = builtins.currentSystem;
                builder = "/bin/sh"; args = [ "-c" "echo ${dep} %[1]s > $out" ]; }
`, nonce(n.t)))
}

// buildTree builds a directory with nested directories, executables,
// symlinks, empty files and directories, odd sizes, a self-reference and a
// reference to a dependency.
func (n *nixEnv) buildTree() string {
	script := `set -e
mkdir -p $out/a/b/c $out/emptydir $out/B
echo ${dep} > $out/a/b/c/deep
printf '#!/bin/sh\necho hi\n' > $out/run.sh
chmod 755 $out/run.sh
chmod 700 $out/a/b
: > $out/empty
printf 1234567 > $out/seven
printf 12345678 > $out/eight
head -c 100003 /dev/urandom > $out/B/random
ln -s a/b/c/deep $out/link
ln -s $out $out/self
ln -s /nonexistent/target $out/dangling
echo NONCE > $out/a.b
echo x > $out/a-b
`
	return n.Build(fmt.Sprintf(`
let dep = derivation { name = "dep"; system = builtins.currentSystem;
                       builder = "/bin/sh"; args = [ "-c" "echo dep %[1]s > $out" ]; };
in derivation { name = "tree"; system = builtins.currentSystem; PATH = "/usr/bin:/bin";
                builder = "/bin/sh"; args = [ "-c" %[2]q ]; }
`, nonce(n.t), strings.ReplaceAll(script, "NONCE", nonce(n.t))))
}

// readNarInfos parses every narinfo of a file:// cache directory.
func readNarInfos(t *testing.T, cache string) map[string]*narinfo.NarInfo {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(cache, "*.narinfo"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no narinfo files in %s (%v)", cache, err)
	}
	out := map[string]*narinfo.NarInfo{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ni, err := narinfo.Parse(bytes.NewReader(data), storepath.DefaultStoreDir)
		if err != nil {
			t.Fatalf("%s: %v\n%s", f, err, data)
		}
		// Our rendering must be Nix's, byte for byte.
		again, err := ni.MarshalText()
		if err != nil {
			t.Fatalf("%s: MarshalText: %v", f, err)
		}
		if !bytes.Equal(again, data) {
			t.Errorf("%s: MarshalText differs from Nix's file\nnix:\n%s\nours:\n%s", f, data, again)
		}
		if storepath.HashPart(ni.StorePath)+".narinfo" != filepath.Base(f) {
			t.Errorf("%s describes %s", f, ni.StorePath)
		}
		out[ni.StorePath] = ni
	}
	return out
}

func TestNixKeyInterop(t *testing.T) {
	n := newNixEnv(t)
	// Nix-generated keys parse and re-render byte for byte.
	n.Must("nix-store", "--generate-binary-cache-key", "nix-made-1", n.Path("nix.sec"), n.Path("nix.pub"))
	secText, _ := os.ReadFile(n.Path("nix.sec"))
	pubText, _ := os.ReadFile(n.Path("nix.pub"))
	sec, err := signing.ParseSecretKey(secText)
	if err != nil {
		t.Fatalf("ParseSecretKey(Nix's key): %v", err)
	}
	pub, err := signing.ParsePublicKey(pubText)
	if err != nil {
		t.Fatalf("ParsePublicKey(Nix's key): %v", err)
	}
	if sec.String() != string(secText) || pub.String() != string(pubText) {
		t.Errorf("re-rendered keys differ from Nix's files:\n%q\n%q\n%q\n%q", sec, secText, pub, pubText)
	}
	if !sec.Public().Equal(pub) {
		t.Errorf("Public() of Nix's secret key = %v, want %v", sec.Public(), pub)
	}
	if fi, err := os.Stat(n.Path("nix.sec")); err == nil && fi.Mode().Perm() != 0o600 {
		t.Logf("note: Nix wrote the secret key with mode %v", fi.Mode().Perm())
	}

	// Our keys are accepted by Nix: it derives the same public key.
	ours, err := signing.GenerateKey("go-made-1")
	if err != nil {
		t.Fatal(err)
	}
	secBytes, _ := ours.MarshalText()
	out, errOut, code := n.RunInput(secBytes, "nix", "key", "convert-secret-to-public")
	if code != 0 {
		t.Fatalf("nix key convert-secret-to-public: exit %d\n%s", code, errOut)
	}
	if strings.TrimSpace(out) != ours.Public().String() {
		t.Errorf("Nix derives public key %q from our secret key, we derive %q", out, ours.Public())
	}
}

// TestNixAcceptsOurSignatures copies an unsigned closure to a file:// cache,
// signs the narinfos with our Sign, and has Nix import them into a chroot
// store that trusts only our key.
func TestNixAcceptsOurSignatures(t *testing.T) {
	n := newNixEnv(t)
	out := n.buildClosure()
	cache := n.Path("cache")
	n.Must("nix", "copy", "--to", "file://"+cache+"?compression=none", out)
	infos := readNarInfos(t, cache)
	if len(infos) != 2 {
		t.Fatalf("expected 2 narinfos (app and dep), got %d", len(infos))
	}

	key, err := signing.GenerateKey("nixpki-test-1")
	if err != nil {
		t.Fatal(err)
	}
	trusted := key.Public().String()

	// Without signatures Nix refuses the closure.
	_, errOut, code := n.Run("nix", "copy", "--from", "file://"+cache, "--to", n.Path("unsigned-store"),
		"--option", "trusted-public-keys", trusted, out)
	if code == 0 || !strings.Contains(errOut, "lacks a valid signature") {
		t.Fatalf("nix copy of unsigned paths: exit %d, stderr:\n%s", code, errOut)
	}

	for sp, ni := range infos {
		fp, err := ni.Fingerprint()
		if err != nil {
			t.Fatal(err)
		}
		ni.Sigs = append(ni.Sigs, signing.Sign(key, fp))
		text, err := ni.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(cache, storepath.HashPart(sp)+".narinfo"), text, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A store trusting another key still refuses.
	other, _ := signing.GenerateKey("nixpki-test-1") // same name, different key
	_, errOut, code = n.Run("nix", "copy", "--from", "file://"+cache, "--to", n.Path("other-store"),
		"--option", "trusted-public-keys", other.Public().String(), out)
	if code == 0 || !strings.Contains(errOut, "lacks a valid signature") {
		t.Fatalf("nix copy trusting an unrelated key: exit %d, stderr:\n%s", code, errOut)
	}

	// A store trusting our key accepts.
	target := n.Path("target")
	n.Must("nix", "copy", "--from", "file://"+cache, "--to", target, "--option", "trusted-public-keys", trusted, out)
	n.Must("nix", "store", "verify", "--store", target, "-r", "--sigs-needed", "1",
		"--option", "trusted-public-keys", trusted, out)
	sigs := n.Must("nix", "path-info", "--store", target, "--sigs", "-r", out)
	if strings.Count(sigs, key.Name+":") != 2 {
		t.Errorf("nix path-info --sigs in the target store:\n%s", sigs)
	}
}

// TestNixSignaturesVerifyWithUs has Nix sign while copying, with its own
// key and with ours, and checks the signatures with Verify.
func TestNixSignaturesVerifyWithUs(t *testing.T) {
	n := newNixEnv(t)
	out := n.buildClosure()
	n.Must("nix-store", "--generate-binary-cache-key", "nix-signer-1", n.Path("nix.sec"), n.Path("nix.pub"))
	pubText, _ := os.ReadFile(n.Path("nix.pub"))
	nixPub, err := signing.ParsePublicKey(pubText)
	if err != nil {
		t.Fatal(err)
	}
	ours, _ := signing.GenerateKey("go-signer-1")
	ourSec, _ := ours.MarshalText()
	if err := os.WriteFile(n.Path("go.sec"), ourSec, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		sec string
		pub signing.PublicKey
	}{{n.Path("nix.sec"), nixPub}, {n.Path("go.sec"), ours.Public()}} {
		cache := n.Path("cache-" + c.pub.Name)
		n.Must("nix", "copy", "--to", "file://"+cache+"?compression=none&secret-key="+c.sec, out)
		for sp, ni := range readNarInfos(t, cache) {
			fp, err := ni.Fingerprint()
			if err != nil {
				t.Fatal(err)
			}
			if len(ni.Sigs) != 1 || !c.pub.Verify(fp, ni.Sigs[0]) {
				t.Errorf("%s: signatures %v do not verify with %v over %q", sp, ni.Sigs, c.pub, fp)
			}
			if ni.Sigs[0].Name == c.pub.Name {
				bad := ni.Sigs[0]
				if c.pub.Verify(fp+"x", bad) {
					t.Errorf("%s: signature verifies over a different fingerprint", sp)
				}
			}
			// The NAR in the cache has the narinfo's hash and size and
			// is a well-formed NAR.
			f, err := os.Open(filepath.Join(cache, ni.URL))
			if err != nil {
				t.Fatal(err)
			}
			sum, size, err := nar.Check(f)
			f.Close()
			if err != nil || sum != ni.NarHash || size != ni.NarSize {
				t.Errorf("%s: nar.Check = %s, %d, %v; narinfo says %s, %d", sp, nixhash.FormatSHA256(sum), size, err,
					nixhash.FormatSHA256(ni.NarHash), ni.NarSize)
			}
		}
		// Nix itself accepts our key's signatures.
		n.Must("nix", "copy", "--from", "file://"+cache, "--to", n.Path("target-"+c.pub.Name),
			"--option", "trusted-public-keys", c.pub.String(), out)
	}
}

// TestNixDumpPath compares DumpPath with nix-store --dump, and reads Nix's
// NAR back.
func TestNixDumpPath(t *testing.T) {
	n := newNixEnv(t)
	tree := n.buildTree()

	// A tree made outside the store, with names that sort differently in
	// other collations.
	local := n.Path("local")
	for _, d := range []string{"Z", "a/x y", "ü", "a/.hidden"} {
		if err := os.MkdirAll(filepath.Join(local, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, mode := range map[string]os.FileMode{"a/b": 0o644, "a/x y/exe": 0o744, "-dash": 0o600, "a/.hidden/f": 0o444, "ä": 0o100} {
		if err := os.WriteFile(filepath.Join(local, name), []byte(name), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("ü", filepath.Join(local, "Z/to-u")); err != nil {
		t.Fatal(err)
	}
	singleFile := filepath.Join(local, "a/b")
	symlinkRoot := filepath.Join(local, "Z/to-u")

	for _, p := range []string{tree, local, singleFile, symlinkRoot, filepath.Join(tree, "run.sh")} {
		nixNAR := []byte(n.Must("nix-store", "--dump", p))
		var ours bytes.Buffer
		if err := nar.DumpPath(&ours, p); err != nil {
			t.Fatalf("DumpPath(%s): %v", p, err)
		}
		if !bytes.Equal(ours.Bytes(), nixNAR) {
			t.Fatalf("DumpPath(%s) differs from nix-store --dump (%d vs %d bytes)", p, ours.Len(), len(nixNAR))
		}

		// nix hash path agrees with HashPath.
		sum, size, err := nar.HashPath(p)
		if err != nil || size != uint64(len(nixNAR)) {
			t.Fatalf("HashPath(%s) = %d bytes, %v", p, size, err)
		}
		nixHash := strings.TrimSpace(n.Must("nix", "hash", "path", "--base32", p))
		if "sha256:"+nixHash != nixhash.FormatSHA256(sum) {
			t.Errorf("nix hash path %s = %s, nar.HashPath = %s", p, nixHash, nixhash.FormatSHA256(sum))
		}

		// Reading Nix's NAR gives the tree; writing the entries back
		// gives the same bytes.
		entries, again := readAndRewrite(t, nixNAR)
		if !bytes.Equal(again, nixNAR) {
			t.Errorf("%s: Reader→Writer round trip changed the archive", p)
		}
		if want := walkTree(t, p); !slices.Equal(entries, want) {
			t.Errorf("%s: NAR entries\n%v\nfile system\n%v", p, entries, want)
		}
	}

	// The store's registered NarHash is ours.
	var infos []pathinfo.JSON
	if err := json.Unmarshal([]byte(n.Must("nix", "path-info", "--json", tree)), &infos); err != nil || len(infos) != 1 {
		t.Fatalf("nix path-info --json: %v", err)
	}
	h, err := nixhash.ParseSHA256(infos[0].NarHash)
	if err != nil {
		t.Fatal(err)
	}
	if sum, size, _ := nar.HashPath(tree); sum != h || size != infos[0].NarSize {
		t.Errorf("HashPath(%s) = %s %d, Nix registered %s %d", tree, nixhash.FormatSHA256(sum), size, infos[0].NarHash, infos[0].NarSize)
	}
}

// walkTree describes a file-system tree as nar.Entry strings, in NAR order.
func walkTree(t *testing.T, root string) []string {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		np := "/" + filepath.ToSlash(rel)
		if rel == "." {
			np = "/"
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := nar.Entry{Path: np}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = nar.Symlink
			e.LinkTarget, _ = os.Readlink(p)
		case fi.IsDir():
			e.Type = nar.Directory
		case fi.Mode()&0o100 != 0:
			e.Type, e.Size = nar.Executable, fi.Size()
		default:
			e.Type, e.Size = nar.Regular, fi.Size()
		}
		out = append(out, fmt.Sprint(e))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestNixHashNotations checks ParseSHA256 against nix hash to-*.
func TestNixHashNotations(t *testing.T) {
	n := newNixEnv(t)
	var h [32]byte
	rand.Read(h[:])
	b16 := hex.EncodeToString(h[:])
	for _, conv := range []string{"to-base16", "to-base32", "to-base64", "to-sri"} {
		s := strings.TrimSpace(n.Must("nix", "hash", conv, "--type", "sha256", b16))
		if conv != "to-sri" {
			s = "sha256:" + s
		}
		got, err := nixhash.ParseSHA256(s)
		if err != nil || got != h {
			t.Errorf("ParseSHA256(%q from nix hash %s) = %x, %v; want %x", s, conv, got, err, h)
		}
		if conv == "to-base32" && s != nixhash.FormatSHA256(h) {
			t.Errorf("FormatSHA256 = %s, nix hash to-base32 = %s", nixhash.FormatSHA256(h), s)
		}
		if conv == "to-sri" && s != nixhash.FormatSHA256SRI(h) {
			t.Errorf("FormatSHA256SRI = %s, nix hash to-sri = %s", nixhash.FormatSHA256SRI(h), s)
		}
	}
}

// TestNixContentAddressed checks CheckContentAddress on narinfos of
// content-addressed paths made by Nix: nix-store --add (fixed:r:sha256),
// --add-fixed flat sha256 and recursive sha1, and a .drv (text, with
// references).
func TestNixContentAddressed(t *testing.T) {
	n := newNixEnv(t)
	file := n.Path("file.txt")
	if err := os.WriteFile(file, []byte(nonce(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	paths := []string{
		strings.TrimSpace(n.Must("nix-store", "--add", file)),
		strings.TrimSpace(n.Must("nix-store", "--add-fixed", "sha256", file)),
		strings.TrimSpace(n.Must("nix-store", "--add-fixed", "--recursive", "sha1", file)),
	}
	expr := n.Path("drv.nix")
	os.WriteFile(expr, []byte(fmt.Sprintf(`
let dep = derivation { name = "dep"; system = builtins.currentSystem;
                       builder = "/bin/sh"; args = [ "-c" "echo %s > $out" ]; };
in derivation { name = "app"; system = builtins.currentSystem;
                builder = "/bin/sh"; args = [ "-c" "echo ${dep} > $out" ]; }`, nonce(t))), 0o644)
	drv := strings.TrimSpace(n.Must("nix-instantiate", expr))

	cache := n.Path("cache")
	n.Must(append([]string{"nix", "copy", "--to", "file://" + cache + "?compression=none"}, paths...)...)
	// Without --derivation, nix copy would build and copy the outputs.
	n.Must("nix", "copy", "--derivation", "--to", "file://"+cache+"?compression=none", drv)
	infos := readNarInfos(t, cache)
	wantCA := map[string]string{paths[0]: "fixed:r:sha256:", paths[1]: "fixed:sha256:", paths[2]: "fixed:r:sha1:", drv: "text:sha256:"}
	for p, prefix := range wantCA {
		ni := infos[p]
		if ni == nil {
			t.Fatalf("no narinfo for %s", p)
		}
		if !ni.ContentAddressed() || !strings.HasPrefix(ni.CA, prefix) {
			t.Errorf("%s: CA = %q, want prefix %q", p, ni.CA, prefix)
		}
		if err := ni.CheckContentAddress(); err != nil {
			t.Errorf("CheckContentAddress: %v", err)
		}
		if p == drv && len(ni.References) == 0 {
			t.Errorf("%s: expected the .drv to have references", p)
		}
		// An extra reference changes the derived path.
		bad := *ni
		bad.References = append(slices.Clone(bad.References), storepath.HashPart(drv)+"-extra")
		if err := bad.CheckContentAddress(); err == nil {
			t.Errorf("%s: CheckContentAddress accepted an extra reference", p)
		}
	}
	// The .drv's dependencies came along; they are content-addressed too.
	for p, ni := range infos {
		if !ni.ContentAddressed() {
			t.Errorf("%s: no CA", p)
		} else if err := ni.CheckContentAddress(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// readAndRewrite reads a NAR and writes its entries back, returning the
// entries as strings and the bytes written.
func readAndRewrite(t *testing.T, data []byte) ([]string, []byte) {
	t.Helper()
	var entries []string
	var buf bytes.Buffer
	nr, nw := nar.NewReader(bytes.NewReader(data)), nar.NewWriter(&buf)
	for {
		e, err := nr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading NAR: %v", err)
		}
		entries = append(entries, fmt.Sprint(*e))
		if err := nw.WriteHeader(e); err != nil {
			t.Fatalf("writing back %s: %v", e.Path, err)
		}
		if _, err := io.Copy(nw, nr); err != nil {
			t.Fatalf("copying %s: %v", e.Path, err)
		}
	}
	if err := nw.Close(); err != nil {
		t.Fatal(err)
	}
	return entries, buf.Bytes()
}
