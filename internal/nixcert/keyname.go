package nixcert

import (
	"fmt"
	"strings"
	"unicode"
)

// The naming rule: the key names of subject S are S itself and S-<n>, n a decimal
// number ("alice", "alice-1", "alice-2"). An issuable subject never ends in
// "-<digits>", so the text after a key name's last '-' tells whether it is a number
// and what precedes it is the one subject the name can belong to: no subject's
// names can be another subject's. Nix finds trusted keys by name, so a member must
// not be able to take a name that stands for another member, a builder or a cache.

// CheckKeyName reports whether keyName is one of subject's key names under the
// naming rule, and subject an issuable subject (CheckIssuableSubject).
func CheckKeyName(keyName, subject string) error {
	if err := checkASCIIName("key name", keyName); err != nil {
		return err
	}
	if err := CheckIssuableSubject(subject); err != nil {
		return err
	}
	if keyName == subject {
		return nil
	}
	if n, ok := strings.CutPrefix(keyName, subject+"-"); ok && isDigits(n) {
		return nil
	}
	if owner := SubjectOfKeyName(keyName); owner != subject && owner != "" && CheckIssuableSubject(owner) == nil {
		return fmt.Errorf("key name %q does not match subject %q: it is a name of subject %q; name the key %q or %q (a number after the dash)", keyName, subject, owner, subject, subject+"-1")
	}
	return fmt.Errorf("key name %q does not match subject %q: name the key %q or %q-<number>, e.g. %q", keyName, subject, subject, subject, subject+"-1")
}

// SubjectOfKeyName returns the subject a key name belongs to under the naming rule:
// the name without a trailing "-<digits>".
func SubjectOfKeyName(keyName string) string {
	if i := strings.LastIndexByte(keyName, '-'); i > 0 && isDigits(keyName[i+1:]) {
		return keyName[:i]
	}
	return keyName
}

// CheckIssuableSubject checks a subject the CA may issue to: a valid subject
// (ValidateSubject) that does not end in "-<digits>", which is the shape of its
// key names.
func CheckIssuableSubject(subject string) error {
	if err := ValidateSubject(subject); err != nil {
		return err
	}
	if owner := SubjectOfKeyName(subject); owner != subject {
		return fmt.Errorf("subject %q ends in a dash and digits, the form of the key names of subject %q: choose a subject that does not, e.g. %q", subject, owner, strings.ReplaceAll(subject, "-", "_"))
	}
	return nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// checkASCIIName refuses non-ASCII characters by name, so that look-alike letters
// and invisible format characters (U+200B, U+202E, U+FEFF) cannot make one name pass
// for another on screen.
func checkASCIIName(what, s string) error {
	for i, r := range s {
		if r < 0x80 {
			continue
		}
		kind := "a non-ASCII character"
		if unicode.Is(unicode.Cf, r) {
			kind = "an invisible Unicode format character"
		}
		return fmt.Errorf("%s %q contains %s (U+%04X at byte %d): certified names are ASCII letters, digits and . _ @ + -", what, s, kind, r, i)
	}
	return nil
}
