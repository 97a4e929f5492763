package x509util

import (
	"fmt"
	"math/big"
	"strings"
)

// SerialHex renders a serial as nixpki stores and prints it: lowercase hex, an even
// number of digits (the bytes openssl prints, without colons).
func SerialHex(n *big.Int) string {
	s := n.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// ParseSerial accepts a serial as people paste it: hex in any case, with or without
// colons, spaces or a 0x prefix (openssl's `serial=…`, `Serial Number: 4a:3f:…`).
func ParseSerial(s string) (string, error) {
	t := strings.TrimSpace(s)
	t = strings.TrimPrefix(strings.TrimPrefix(t, "serial="), "0x")
	t = strings.NewReplacer(":", "", " ", "").Replace(strings.ToLower(t))
	n, ok := new(big.Int).SetString(t, 16)
	if t == "" || !ok || n.Sign() <= 0 {
		return "", fmt.Errorf("serial %q is not a hex number: give it as openssl prints it, e.g. 4A3F…, 4a:3f:…", s)
	}
	return SerialHex(n), nil
}
