package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"testing"
	"time"
)

// The CA certifies only keys that hold: a member or relay identity is
// worth what its key is, and a request for a weak one (a 1024-bit RSA
// key, a P-224 curve) is refused, not signed. Outpost makes P-256 keys;
// the other strong kinds are accepted.
func TestCARefusesWeakKeys(t *testing.T) {
	authority, err := LoadOrCreate(t.TempDir(), nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	mustKey := func(k crypto.Signer, err error) crypto.Signer {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		ok   bool
	}{
		{"P-256", mustKey(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)), true},
		{"P-384", mustKey(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)), true},
		{"Ed25519", edKey, true},
		{"RSA-2048", mustKey(rsa.GenerateKey(rand.Reader, 2048)), true},
		{"RSA-1024", weakRSA(t), false},
		{"P-224", mustKey(ecdsa.GenerateKey(elliptic.P224(), rand.Reader)), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ag-1"}}, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			_, merr := authority.IssueMember(csr, "ag-1")
			_, serr := authority.IssueServing(csr, "rl-1", []string{"relay.branch.example"}, time.Hour)
			for what, err := range map[string]error{"member": merr, "serving": serr} {
				switch {
				case tc.ok && err != nil:
					t.Errorf("%s certificate for a %s key refused: %v", what, tc.name, err)
				case !tc.ok && err == nil:
					t.Errorf("%s certificate issued for a %s key", what, tc.name)
				}
			}
		})
	}
}

// weakRSA is a 1024-bit RSA key: the smallest crypto/rsa still makes
// and uses.
func weakRSA(t *testing.T) crypto.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
