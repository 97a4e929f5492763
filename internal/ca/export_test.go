package ca

import (
	"nixpki/internal/store"
)

func storeFilterTLS() store.CertFilter { return store.CertFilter{Issuer: IssuerTLS} }
