package state

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
)

// RebootNeed is what items applied in one boot need a reboot to take
// effect, written as soon as a plugin says so: the run's report, which
// says it too, is written only once the whole run ends, and a stop in
// between (a restart, an upgrade, a kill) lost it.
type RebootNeed struct {
	Boot  string   `json:"boot"`
	Since int64    `json:"since_unix"`
	Items []string `json:"items"`
}

const rebootNeedFile = "reboot-need.json"

// maxRebootNeed bounds the items recorded (as a report's).
const maxRebootNeed = 100

// RebootNeed is the recorded need, if any (nil when none, or unreadable:
// a damaged record costs a reboot that would have been asked, nothing
// else).
func (s *State) RebootNeed() *RebootNeed {
	b, err := os.ReadFile(s.path(rebootNeedFile))
	if err != nil {
		return nil
	}
	var n RebootNeed
	if json.Unmarshal(b, &n) != nil || n.Boot == "" || len(n.Items) > maxRebootNeed {
		return nil
	}
	return &n
}

// NoteRebootNeed records that item, applied in boot at unix time now,
// needs a reboot. A record of another boot is replaced: that boot's
// reboot happened.
func (s *State) NoteRebootNeed(boot, item string, now int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.RebootNeed()
	if n == nil || n.Boot != boot {
		n = &RebootNeed{Boot: boot, Since: now}
	}
	if slices.Contains(n.Items, item) {
		return nil
	}
	if len(n.Items) >= maxRebootNeed {
		return errors.New("reboot need: too many items")
	}
	n.Items = append(n.Items, item)
	slices.Sort(n.Items)
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return s.noteLocked("reboot need", s.write(s.path(rebootNeedFile), b, 0o600))
}
