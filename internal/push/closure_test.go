package push

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"nixpki/internal/nix/nixhash"
	"nixpki/internal/testutil"
)

// The closure read from Nix's database is what nix path-info --json -r prints: the
// same paths with the same NarHash, size, references, deriver, content address and
// signatures (hashes compared as parsed: the two notations differ).
func TestClosureFromDBMatchesNix(t *testing.T) {
	n := testutil.NewNix(t)
	top := n.BuildSmallClosure("closure")
	n.Must("nix-store", "--generate-binary-cache-key", "closure-test-1", n.Path("k.sec"), n.Path("k.pub"))
	n.Must("nix", "store", "sign", "-r", "--key-file", n.Path("k.sec"), top)

	fromDB, err := closureFromDB(context.Background(), []string{top})
	if err != nil {
		t.Fatalf("reading the closure from the database: %v", err)
	}
	var fromNix []pathInfo
	if err := json.Unmarshal([]byte(n.Must("nix", "path-info", "--json", "-r", top)), &fromNix); err != nil {
		t.Fatal(err)
	}
	if len(fromDB) != 3 || len(fromNix) != 3 {
		t.Fatalf("closure: %d paths from the database, %d from nix path-info; want 3", len(fromDB), len(fromNix))
	}
	norm := func(in []pathInfo) []pathInfo {
		out := make([]pathInfo, len(in))
		for i, p := range in {
			h, err := nixhash.ParseSHA256(p.NarHash)
			if err != nil {
				t.Fatalf("%s: %v", p.Path, err)
			}
			p.NarHash = nixhash.FormatSHA256(h)
			if len(p.References) == 0 {
				p.References = nil
			}
			out[i] = p
		}
		return out
	}
	if a, b := norm(fromDB), norm(fromNix); !reflect.DeepEqual(a, b) {
		t.Fatalf("the database's closure differs from nix path-info's:\n%+v\n%+v", a, b)
	}
	sawCA, sawSig := false, false
	for _, p := range fromDB {
		sawCA = sawCA || strings.HasPrefix(p.CA, "fixed:")
		for _, s := range p.Signatures {
			sawSig = sawSig || strings.HasPrefix(s, "closure-test-1:")
		}
	}
	if !sawCA || !sawSig {
		t.Fatalf("the closure lacks a content address (%v) or a signature (%v)", sawCA, sawSig)
	}
	if _, err := closureFromDB(context.Background(), []string{"/nix/store/00000000000000000000000000000000-not-valid"}); err == nil {
		t.Fatal("a path that is not valid was read from the database")
	}
}
