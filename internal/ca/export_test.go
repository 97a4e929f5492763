package ca

import (
	"nixpki/internal/keys"
	"nixpki/internal/store"
)

func storeFilterTLS() store.CertFilter { return store.CertFilter{Issuer: IssuerTLS} }

func init() { keys.UseFastKDFForTesting() }
