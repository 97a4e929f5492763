package localstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"nixpki/internal/nix/nixhash"
	"nixpki/internal/nix/pathinfo"
	"nixpki/internal/nix/signing"
	"nixpki/internal/testutil"
)

// TestStoreMatchesNix reads a closure that real Nix built, from the machine's
// store and from a chroot store nix copy filled, and checks that Info, Closure
// and All say what nix path-info says, that arguments resolve as Nix resolves
// them, and that the real path holds the files.
func TestStoreMatchesNix(t *testing.T) {
	n := testutil.NewNix(t)
	top := n.BuildSmallClosure("ls")
	n.Must("nix-store", "--generate-binary-cache-key", "ls-test-1", n.Path("k.sec"), n.Path("k.pub"))
	n.Must("nix", "store", "sign", "-r", "--key-file", n.Path("k.sec"), top)
	chroot := n.Path("chroot")
	n.Must("nix", "copy", "--no-check-sigs", "--to", chroot, top)

	for name, root := range map[string]string{"machine": "/", "chroot": chroot} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s := Open(ctx, root)
			defer s.Close()
			args := []string{"nix", "path-info", "--json", "-r", top}
			if root != "/" {
				args = append(args, "--store", root)
			}
			var fromNix []pathinfo.JSON
			if err := json.Unmarshal([]byte(n.Must(args...)), &fromNix); err != nil {
				t.Fatal(err)
			}
			if len(fromNix) != 3 {
				t.Fatalf("nix path-info gives %d paths, want 3", len(fromNix))
			}

			link := n.Path("result-" + name)
			os.Symlink(s.RealPath(top), link)
			for _, arg := range []string{top, top + "/refs", link, s.RealPath(top) + "/dep"} {
				if got, err := s.Resolve(arg); err != nil || got != top {
					t.Errorf("Resolve(%q) = %q, %v; want %s", arg, got, err, top)
				}
			}
			closure, err := s.Closure(ctx, []string{top})
			if err != nil {
				t.Fatal(err)
			}
			if len(closure) != len(fromNix) {
				t.Fatalf("Closure gives %d paths, nix path-info %d", len(closure), len(fromNix))
			}
			all, err := s.All(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range fromNix {
				i := slices.IndexFunc(closure, func(pi *pathinfo.Info) bool { return pi.Path == want.Path })
				if i < 0 {
					t.Fatalf("Closure lacks %s", want.Path)
				}
				got := closure[i]
				if one, err := s.Info(ctx, want.Path); err != nil || !equalInfo(one, got) {
					t.Errorf("Info(%s) = %+v, %v; Closure has %+v", want.Path, one, err, got)
				}
				checkAgainstNix(t, got, want)
				if _, err := os.Lstat(s.RealPath(got.Path)); err != nil {
					t.Errorf("RealPath(%s): %v", got.Path, err)
				}
				if !slices.Contains(all, got.Path) {
					t.Errorf("All lacks %s", got.Path)
				}
			}
			if root != "/" && len(all) != 3 {
				t.Errorf("All lists %d paths of the chroot store, want 3: %q", len(all), all)
			}

			missing := "/nix/store/00000000000000000000000000000000-not-valid"
			if _, err := s.Info(ctx, missing); !errors.Is(err, pathinfo.ErrNotValid) {
				t.Errorf("Info of a path that is not valid: %v", err)
			}
			if _, err := s.Closure(ctx, []string{top, missing}); !errors.Is(err, pathinfo.ErrNotValid) || !strings.Contains(err.Error(), missing) {
				t.Errorf("Closure with a path that is not valid: %v", err)
			}
		})
	}

	t.Run("no database", func(t *testing.T) {
		s := Open(context.Background(), t.TempDir())
		defer s.Close()
		if _, err := s.Info(context.Background(), top); err == nil || !strings.Contains(err.Error(), "Nix database") {
			t.Errorf("Info without a database: %v", err)
		}
		if _, err := s.All(context.Background()); err == nil {
			t.Error("All without a database succeeded")
		}
	})
}

func equalInfo(a, b *pathinfo.Info) bool {
	return a.Path == b.Path && a.NarHash == b.NarHash && a.NarSize == b.NarSize && slices.Equal(a.References, b.References) &&
		a.CA == b.CA && a.Deriver == b.Deriver && a.Ultimate == b.Ultimate && fmt.Sprint(a.Sigs) == fmt.Sprint(b.Sigs)
}

// checkAgainstNix compares a record with nix path-info's (hashes as parsed: the
// two notations differ).
func checkAgainstNix(t *testing.T, got *pathinfo.Info, want pathinfo.JSON) {
	t.Helper()
	h, err := nixhash.ParseSHA256(want.NarHash)
	if err != nil {
		t.Fatalf("%s: %v", want.Path, err)
	}
	var sigs []string
	for _, s := range got.Sigs {
		sigs = append(sigs, s.String())
	}
	var wantSigs []string
	for _, s := range want.Signatures {
		sig, err := signing.ParseSignature(s)
		if err != nil {
			t.Fatalf("%s: nix path-info's signature: %v", want.Path, err)
		}
		wantSigs = append(wantSigs, sig.String())
	}
	slices.Sort(sigs)
	slices.Sort(wantSigs)
	if got.NarHash != h || got.NarSize != want.NarSize || !slices.Equal(got.References, want.References) ||
		got.Deriver != want.Deriver || got.CA != want.CA || !slices.Equal(sigs, wantSigs) {
		t.Errorf("%s: the database says %+v, nix path-info %+v", want.Path, got, want)
	}
}
