package quicsrv

import (
	"bytes"
	"crypto/x509"
	"strings"
	"time"

	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/pkg/tlsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// servingCert issues a relay's HTTPS serving certificate for the hosts it
// asks for that its office's relay URLs name: an admin's office settings
// say where the office's relays are, so a relay cannot get a certificate
// for another office's relay, nor for anything else the CA vouches for.
func (s *Server) servingCert(id string, req *wire.ServingCertRequest) *wire.Response {
	m, err := s.store.Member(id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "this member is not enrolled any more")
	}
	if m.Role != "relay" {
		return wire.Errorf(wire.Error_CODE_DENIED, "only relays get serving certificates")
	}
	if len(req.GetHosts()) > 16 || len(req.GetCsr()) > 8192 {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "serving certificate request too large")
	}
	o, err := s.store.Office(m.Office)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_NOT_FOUND, "office %s no longer exists", m.Office)
	}
	hosts := tlsutil.ServingHosts(req.GetHosts(), o.RelayURLs())
	if len(hosts) == 0 {
		return wire.Errorf(wire.Error_CODE_DENIED, "none of this relay's hosts (%s) is named by a relay URL of office %s (%s): "+
			"add the relay's URL to the office (outpost office edit %s --relay https://HOST:PORT)",
			clip(strings.Join(req.GetHosts(), ", "), maxText), o.Name, strings.Join(o.RelayURLs(), ", "), o.Name)
	}
	der, err := s.ca.IssueServing(req.GetCsr(), m.ID, hosts, ca.ServingLifetime)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "serving certificate: %v", err)
	}
	s.log.Info("relay serving certificate issued", "member", id, "office", o.Name, "hosts", hosts)
	return &wire.Response{Body: &wire.Response_ServingCert{ServingCert: &wire.ServingCertResponse{Certificate: der, Hosts: hosts}}}
}

// memberCert issues member id a new certificate for the key of cert, the
// one it connects with, once cert is within wire.MemberCertRenewBefore
// (and a day) of its end: members renew their own, and one that was
// deleted meanwhile gets none.
func (s *Server) memberCert(id string, cert *x509.Certificate, req *wire.MemberCertRequest) *wire.Response {
	if cert == nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "no member certificate on this connection")
	}
	if _, err := s.store.Member(id); err != nil {
		return wire.Errorf(wire.Error_CODE_UNAUTHENTICATED, "this member is not enrolled any more")
	}
	if from := cert.NotAfter.Add(-wire.MemberCertRenewBefore - 24*time.Hour); time.Now().Before(from) {
		return wire.Errorf(wire.Error_CODE_DENIED, "this member's certificate is good until %s: ask for a new one from %s",
			cert.NotAfter.UTC().Format(time.DateOnly), from.UTC().Format(time.DateOnly))
	}
	if len(req.GetCsr()) > 8192 {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "certificate request too large")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "certificate request is malformed: %v", err)
	}
	// The same key: it is what enrolment recorded of the member, and the
	// key it proves it holds by connecting.
	if !bytes.Equal(csr.RawSubjectPublicKeyInfo, cert.RawSubjectPublicKeyInfo) {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "the certificate request is for another key than this member's")
	}
	// One an hour: a member's connection made before its renewal still
	// shows the old certificate, and asking again on it must not mint
	// certificates (and log lines) without end.
	if last, ok := s.certIssued.Load(id); ok && time.Since(last.(time.Time)) < time.Hour {
		return wire.Errorf(wire.Error_CODE_DENIED, "a certificate was issued to this member %s ago: connect again to use it", time.Since(last.(time.Time)).Round(time.Second))
	}
	der, err := s.ca.IssueMember(req.GetCsr(), id)
	if err != nil {
		return wire.Errorf(wire.Error_CODE_BAD_REQUEST, "member certificate: %v", err)
	}
	s.certIssued.Store(id, time.Now())
	s.log.Info("member certificate renewed", "member", id, "was_until", cert.NotAfter.UTC().Format(time.DateOnly))
	return &wire.Response{Body: &wire.Response_MemberCert{MemberCert: &wire.MemberCertResponse{Certificate: der}}}
}
