package ca

import (
	"crypto/rand"
	"math/big"
	"nixpki/internal/keys"
)

// newSerial returns a random positive serial of keys.SerialBytes bytes.
func newSerial() (*big.Int, error) {
	b := make([]byte, keys.SerialBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // keep the full length so serials line up when listed
	return new(big.Int).SetBytes(b), nil
}
