package contentaddress

import (
	"testing"
)

func TestContentAddress(t *testing.T) {
	for _, s := range []string{
		"text:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"fixed:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"fixed:r:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"fixed:r:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs",
	} {
		ca, err := Parse(s)
		if err != nil || ca.String() != s {
			t.Errorf("Parse(%q) = %v, %v", s, ca, err)
		}
	}
	for _, s := range []string{"", "text:", "fixed:r:", "nar:sha256:1d6562m394awqas5bbn850s74nqi06n9j4d2m2qdm1xsrhml616i",
		"fixed:sha256-0QRDK8y6h9qwqKIRmawBEVtyNCjIrlW0wlyRNKowxbQ=", "text:sha1:143xibwh31h9bvxzalr0sjvbbvpa6ffs"} {
		if ca, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) = %v, want error", s, ca)
		}
	}
}
