package nixcert

import (
	"strings"
	"testing"
)

func TestKeyNameRule(t *testing.T) {
	for _, ok := range [][2]string{
		{"alice", "alice"}, {"alice-1", "alice"}, {"alice-2024", "alice"},
		{"ci-builder", "ci-builder"}, {"ci-builder-3", "ci-builder"}, {"b.lab-1", "b.lab"},
	} {
		if err := CheckKeyName(ok[0], ok[1]); err != nil {
			t.Errorf("CheckKeyName(%q, %q): %v", ok[0], ok[1], err)
		}
	}
	for _, bad := range []struct{ key, subject, want string }{
		{"alice-admin", "alice", `it is a name of subject "alice-admin"`},
		{"alice-admin-1", "alice", `it is a name of subject "alice-admin"`},
		{"alicex", "alice", "does not match subject"},
		{"alice-", "alice", "does not match subject"},
		{"alice-1x", "alice", "does not match subject"},
		{"bob-1", "alice", `it is a name of subject "bob"`},
		{"alice-1", "alice-1", "ends in a dash and digits"},
		{"web-01", "web-01", `the key names of subject "web"`},
		{"alice\u200b", "alice", "invisible Unicode format character (U+200B"},
		{"alice-\u202e1", "alice", "U+202E"},
		{"\ufeffalice", "alice", "U+FEFF"},
		{"аlice", "alice", "non-ASCII character (U+0430"}, // Cyrillic а
	} {
		err := CheckKeyName(bad.key, bad.subject)
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("CheckKeyName(%q, %q) = %v, want an error containing %q", bad.key, bad.subject, err, bad.want)
		}
	}
	// No key name belongs to two subjects: the subject it belongs to is a function
	// of the name, and that subject's rule accepts it.
	for _, name := range []string{"alice", "alice-1", "alice-admin", "alice-admin-7", "a-1-2", "x-"} {
		owner := SubjectOfKeyName(name)
		for _, s := range []string{"alice", "alice-admin", "a", "a-1", "x", "x-"} {
			if CheckKeyName(name, s) == nil && s != owner {
				t.Errorf("key name %q is accepted for %q and belongs to %q", name, s, owner)
			}
		}
	}
}

// FuzzKeyNameRule: no key name is accepted for two subjects, and the subject a name
// is accepted for is the one SubjectOfKeyName names.
func FuzzKeyNameRule(f *testing.F) {
	for _, s := range [][3]string{
		{"alice-admin", "alice", "alice-admin"}, {"alice-1", "alice", "alice-1"},
		{"a-1-2", "a-1", "a"}, {"x\u202e-1", "x", "x\u202e"}, {"web-01", "web", "web-01"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, name, s1, s2 string) {
		ok1, ok2 := CheckKeyName(name, s1) == nil, CheckKeyName(name, s2) == nil
		if ok1 && ok2 && s1 != s2 {
			t.Fatalf("key name %q accepted for %q and %q", name, s1, s2)
		}
		if ok1 && SubjectOfKeyName(name) != s1 {
			t.Fatalf("key name %q accepted for %q, but SubjectOfKeyName says %q", name, s1, SubjectOfKeyName(name))
		}
	})
}
