package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"sync"
)

// errNotMember is a content request over HTTPS without a certificate of
// the fleet: the relay's content is for members (agents and relays), not
// for whoever can reach it on the office's network.
var errNotMember = errors.New("the relay's content is for the fleet's members: present a member certificate (agents do)")

// errNotLinked is a content request before the relay has joined: it cannot
// tell members yet.
var errNotLinked = errors.New("the relay has not joined its office yet: try again shortly")

// memberRoots is the pool member certificates are checked against: the
// coordinator's CA, known once the relay is enrolled.
type memberRoots struct {
	once sync.Once
	pool *x509.CertPool
}

// verifyMember checks that a TLS client presented a certificate the
// coordinator's CA issued to a member.
func (m *membership) verifyMember(cs *tls.ConnectionState) error {
	select {
	case <-m.linked:
	default:
		return errNotLinked
	}
	m.roots.once.Do(func() {
		if ca, err := x509.ParseCertificate(m.caDER); err == nil {
			m.roots.pool = x509.NewCertPool()
			m.roots.pool.AddCert(ca)
		}
	})
	if m.roots.pool == nil {
		return errNotLinked
	}
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return errNotMember
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: m.roots.pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return errNotMember
	}
	return nil
}
