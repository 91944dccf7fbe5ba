// Package wire holds the messages that cross the network between the
// coordinator, agents and relays (generated from wire.proto), their framing
// on a QUIC stream, and the signing of policy. It is not a transport: it
// reads and writes messages on whatever stream it is given.
package wire

// CloseNotEnrolled is the QUIC close code with which the coordinator ends
// the connection of a member it no longer knows (removed by an admin).
const CloseNotEnrolled = 2

// ALPN protocol identifiers, one per protocol on the coordinator's QUIC port.
const (
	// ALPNEnroll is spoken before a member has a certificate.
	ALPNEnroll = "outpost-enroll/1"
	// ALPNMember is spoken by enrolled agents and relays, with mutual TLS.
	ALPNMember = "outpost-member/1"
)
