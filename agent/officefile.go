package agent

import (
	"bytes"
	"io"
	"os"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/pkg/fsutil"
	"github.com/outposthq/outpost/pkg/wire"
)

// What the coordinator last said of this member's office — its name, the
// gossip keys, the relays, the check-in interval, the time zone — is kept
// on disk, so that a member that starts while the coordinator is out of
// reach is still a member of its office: it joins the office's gossip with
// the keys in use now (not the one it enrolled with, rotated since), fetches
// from the office's relays, and keeps deployment windows in the office's
// time zone.

// maxOfficeFile bounds what is read back (an office information message
// is a few hundred bytes; relays and keys make it grow a little).
const maxOfficeFile = 64 << 10

func (a *Agent) officeFile() string { return filepath.Join(a.cfg.DataDir, "state", "office.pb") }

// saveOffice keeps info when it says something new of the office than
// old (its seeds and revision change at every check-in and are not kept),
// or than the file, which a failed write left behind.
func (a *Agent) saveOffice(old, info *wire.OfficeInfo) {
	if old != nil && bytes.Equal(wire.OfficeDigest(old), wire.OfficeDigest(info)) {
		if kept := a.loadOffice(); kept != nil && bytes.Equal(wire.OfficeDigest(kept), wire.OfficeDigest(info)) {
			return
		}
	}
	c := proto.Clone(info).(*wire.OfficeInfo)
	c.Revision = 0
	b, err := proto.Marshal(c)
	if err == nil {
		err = fsutil.WriteFileAtomic(a.officeFile(), b, 0o600)
	}
	if err != nil {
		a.log.Warn("keep the office's information for the next start", "err", err)
	}
}

// loadOffice reads what saveOffice kept; nil when there is nothing usable.
func (a *Agent) loadOffice() *wire.OfficeInfo {
	f, err := os.Open(a.officeFile())
	if err != nil {
		return nil
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxOfficeFile+1))
	var info wire.OfficeInfo
	switch {
	case err != nil:
	case len(b) > maxOfficeFile:
		err = errString("larger than " + itoa(maxOfficeFile) + " bytes")
	default:
		err = wire.Unmarshal(b, &info)
	}
	if err == nil && info.GetName() == "" && !info.GetRoaming() {
		err = errString("names no office")
	}
	if err != nil {
		a.log.Warn("the kept office information is unusable; waiting for the coordinator's", "file", a.officeFile(), "err", err)
		return nil
	}
	return &info
}

// gossipKeys are the keys the office's gossip uses by info: none for a
// roaming member, the enrolment key without information (nil) or keys.
func (a *Agent) gossipKeys(info *wire.OfficeInfo) [][]byte {
	switch {
	case info.GetRoaming():
		return nil
	case len(info.GetGossipKey()) > 0:
		return append([][]byte{info.GetGossipKey()}, info.GetGossipKeys()...)
	default:
		return [][]byte{a.id.GossipKey} // a coordinator that does not send keys
	}
}
