package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/outposthq/outpost/pkg/safetext"
)

// stamp is an RFC 3339 time of the API; an empty string or null is the zero
// time rather than a decoding error.
type stamp struct{ time.Time }

func (s *stamp) UnmarshalJSON(b []byte) error {
	if string(b) == "null" || string(b) == `""` {
		s.Time = time.Time{}
		return nil
	}
	return s.Time.UnmarshalJSON(b)
}

// The API's objects, as far as the tables need them. JSON output prints the
// API's answer itself, so fields missing here are not lost.
type (
	office struct {
		Name           string   `json:"name"`
		Description    string   `json:"description"`
		Location       string   `json:"location"`
		Mode           string   `json:"mode"`
		Relays         []string `json:"relays"`
		AllowPlainHTTP bool     `json:"allow_plain_http"`
		// Mode distribution.
		DistributionServer string   `json:"distribution_server"`
		Staging            *staging `json:"staging"`
		CheckinInterval    string   `json:"checkin_interval"`
		TimeZone           string   `json:"time_zone"`
		Subnets            []string `json:"subnets"`
		Egress             []string `json:"egress"`
		Revision           int64    `json:"revision"`
		Created            stamp    `json:"created"`
		Agents             int      `json:"agents"`
		Rotation           string   `json:"rotation"` // gossip key rotation phase, while one is under way
	}
	staging struct {
		Revision    int64  `json:"revision"`
		Released    int64  `json:"released_revision"`
		Artifacts   int    `json:"artifacts"`
		Staged      int    `json:"staged"`
		Bytes       int64  `json:"bytes"`
		StagedBytes int64  `json:"staged_bytes"`
		Complete    bool   `json:"complete"`
		Error       string `json:"error"`
	}
	enrollToken struct {
		Token   string `json:"token"`
		ID      string `json:"id"`
		Office  string `json:"office"`
		Role    string `json:"role"`
		Expires stamp  `json:"expires"`
		Uses    int    `json:"uses"`
		Used    int    `json:"used"`
		Revoked stamp  `json:"revoked"`
		State   string `json:"state"`
	}
	policyInfo struct {
		Office   string            `json:"office"`
		Revision int64             `json:"revision"`
		Applied  stamp             `json:"applied"`
		YAML     string            `json:"yaml"`
		Items    []json.RawMessage `json:"items"`
	}
	agent struct {
		ID             string            `json:"id"`
		Hostname       string            `json:"hostname"`
		Office         string            `json:"office"`
		Home           string            `json:"home"`
		Roaming        bool              `json:"roaming"`
		Role           string            `json:"role"`
		Address        string            `json:"address"`
		Addresses      []string          `json:"addresses"`
		LastSeen       stamp             `json:"last_seen"`
		Connected      bool              `json:"connected"`
		Revision       int64             `json:"revision"`
		Compliant      bool              `json:"compliant"`
		Items          []agentItem       `json:"items"`
		Enrolled       stamp             `json:"enrolled"`
		Version        string            `json:"version"`
		UpgradeProblem string            `json:"upgrade_problem"`
		LastHang       string            `json:"last_hang"`
		Labels         map[string]string `json:"labels"`
		Reboot         *struct {
			Items []string `json:"items"`
			Since stamp    `json:"since"`
		} `json:"reboot"`
	}
	agentItem struct {
		ID      string `json:"id"`
		Kind    string `json:"kind"`
		Status  string `json:"status"`
		Message string `json:"message"`
		At      stamp  `json:"at"`
	}
	artifact struct {
		SHA256   string `json:"sha256"`
		Size     int64  `json:"size"`
		Name     string `json:"name"`
		Uploaded stamp  `json:"uploaded"`
		Chunks   int    `json:"chunks"`
		// AlreadyStored answers a push of bytes that were there.
		AlreadyStored bool `json:"already_stored"`
		Fetched       *struct {
			Total   sourceBytes   `json:"total"`
			Offices []sourceBytes `json:"offices"`
		} `json:"fetched"`
	}
	// sourceBytes is what agents fetched of one artifact, by source.
	sourceBytes struct {
		Office     string  `json:"office"`
		Agents     int     `json:"agents"`
		Peer       int64   `json:"peer"`
		Relay      int64   `json:"relay"`
		FileServer int64   `json:"file_server"`
		Served     int64   `json:"served_to_peers"`
		BadChunks  int64   `json:"bad_chunks"`
		HitRatio   float64 `json:"hit_ratio"`
		PeerRatio  float64 `json:"peer_ratio"`
	}
)

// decode unmarshals an API answer into v, saying which answer was wrong.
func decode(raw []byte, what string, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("the coordinator's answer is not a valid %s (%v); do CLI and coordinator versions match?", what, err)
	}
	return nil
}

// writeJSON prints an API answer indented, as --output json promises.
func writeJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("the coordinator's answer is not JSON (%v); do CLI and coordinator versions match?", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// writeJSONValue prints a value of the CLI's own, indented.
func writeJSONValue(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// writeTable prints rows under header, columns aligned.
//
// Cells are escaped (safetext.Escape): much of what tables show was said by
// hosts (item messages, versions, why an upgrade was refused), and a host
// must not move the table's columns or act on the admin's terminal.
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := newTable(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = safetext.Escape(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// writeFields prints "key: value" lines, values aligned and escaped as
// writeTable's cells.
func writeFields(w io.Writer, fields [][2]string) error {
	tw := newTable(w)
	for _, f := range fields {
		fmt.Fprintf(tw, "%s:\t%s\n", f[0], safetext.Escape(f[1]))
	}
	return tw.Flush()
}

// ago says how long before now t was: "12s ago", "3m ago", "never".
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return roughDuration(d, false) + " ago"
}

// until says how long after now t is: "in 23h", or "expired 2h ago".
func until(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := t.Sub(now)
	if d <= 0 {
		return "expired " + ago(now, t)
	}
	if d < time.Second {
		return "in 1s"
	}
	return "in " + roughDuration(d, true)
}

// roughDuration is d in its largest unit: 12s, 3m, 5h, 4d. Ages are
// truncated ("1m ago" until two minutes have passed); times ahead are
// rounded, so that a token made for 72h a moment ago reads "in 3d", not
// "in 2d".
func roughDuration(d time.Duration, round bool) string {
	cut := time.Duration.Truncate
	if round {
		cut = time.Duration.Round
	}
	for _, u := range []struct {
		size, below time.Duration
		suffix      string
	}{
		{time.Second, time.Minute, "s"},
		{time.Minute, time.Hour, "m"},
		{time.Hour, 48 * time.Hour, "h"},
	} {
		if r := cut(d, u.size); r < u.below {
			return fmt.Sprintf("%d%s", r/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dd", cut(d, 24*time.Hour)/(24*time.Hour))
}

// timeAndAge is "2025-01-02T03:04:05Z (3m ago)", or "-" for no time.
func timeAndAge(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339) + " (" + ago(now, t) + ")"
}

// byteSize is n in binary units: 512 B, 1.5 KiB, 12.3 MiB.
func byteSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// plural is "1 item" or "3 items".
func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func goVersion() string { return runtime.Version() }
