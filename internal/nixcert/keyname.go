package nixcert

import (
	"fmt"
	"strings"
)

// CheckKeyName enforces the naming rule: a key named after its subject, "<subject>"
// or "<subject>-<suffix>". Nix finds trusted keys by name, so a member must not be
// able to take a name that stands for another member, a builder or a cache.
func CheckKeyName(keyName, subject string) error {
	if keyName == subject || strings.HasPrefix(keyName, subject+"-") {
		return nil
	}
	return fmt.Errorf("key name %q does not match subject %q: name the key %q or %q", keyName, subject, subject, subject+"-<suffix>")
}
