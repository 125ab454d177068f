// Package passkeytest gives tests a software authenticator's credential that
// a browser could hold.
package passkeytest

import (
	"crypto/ecdsa"
	"crypto/x509"

	"github.com/descope/virtualwebauthn"
)

// Credential is a new P-256 credential. virtualwebauthn writes a public key's
// coordinates without their leading zero bytes, which a relying party rightly
// refuses (a coordinate is 32 bytes); about one key in 64 has such a
// coordinate, so Credential draws again until both are whole.
func Credential() virtualwebauthn.Credential {
	for {
		c := virtualwebauthn.NewCredential(virtualwebauthn.KeyTypeEC2)
		k, err := x509.ParsePKCS8PrivateKey(c.Key.Data)
		if err != nil {
			panic("passkeytest: the authenticator's key does not parse: " + err.Error())
		}
		pub := k.(*ecdsa.PrivateKey).PublicKey
		if len(pub.X.Bytes()) == 32 && len(pub.Y.Bytes()) == 32 {
			return c
		}
	}
}
