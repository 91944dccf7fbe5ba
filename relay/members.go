package relay

import (
	"crypto/tls"
	"crypto/x509"
	"errors"

	"github.com/outposthq/outpost/pkg/tlsutil"
)

// errNotMember is a content request over HTTPS without a certificate of
// the fleet: the relay's content is for members (agents and relays), not
// for whoever can reach it on the office's network.
var errNotMember = errors.New("the relay's content is for the fleet's members: present a member certificate (agents do)")

// errNotLinked is a content request before the relay has joined: it cannot
// tell members yet.
var errNotLinked = errors.New("the relay has not joined its office yet: try again shortly")

// verifyMember checks that a TLS client presented a certificate the
// coordinator's CA issued to a member, and not to one since removed.
func (m *membership) verifyMember(cs *tls.ConnectionState) error {
	select {
	case <-m.linked:
	default:
		return errNotLinked
	}
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return errNotMember
	}
	if err := tlsutil.VerifyFromCA(cs.PeerCertificates, m.id.CAs(), x509.VerifyOptions{KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return errNotMember
	}
	// Member certificates name the member.
	if m.removed.Load().has(cs.PeerCertificates[0].Subject.CommonName) {
		return errRemovedMember
	}
	return nil
}

// caChain is the coordinator CA's certificates the relay holds, once it
// has joined: sent along with its serving certificate.
func (m *membership) caChain() [][]byte {
	select {
	case <-m.linked:
		return m.id.CAChain()
	default:
		return nil
	}
}
