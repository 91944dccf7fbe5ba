package cli

import (
	"context"
	"flag"
	"fmt"
	"time"
)

type caCert struct {
	Fingerprint string    `json:"fingerprint"`
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Ended       bool      `json:"ended"`
}

type caInfo struct {
	caCert
	RenewsFrom time.Time `json:"renews_from"`
	Earlier    []caCert  `json:"earlier"`
	Members    struct {
		Current int `json:"current"`
		Earlier int `json:"earlier"`
		Unknown int `json:"unknown"`
	} `json:"members"`
}

func caCommand() *command {
	return &command{
		name: "ca", maxArgs: 0,
		summary: "show the coordinator's CA: its certificate, when it renews, and who holds the current one",
		timeout: defaultTimeout,
		help: `The coordinator's CA issues the certificates of the coordinator, its members
and relays. Its certificate is made for ten years and renewed with the same
key three years before its end (the coordinator's ca_renew_before): nothing
has to enrol again, and fingerprints of earlier certificates, pinned by
installers and outpost login, still work. Members learn the current one at
their next direct check-in; "members" counts who has.

Examples:
  outpost ca
  outpost ca --output json
`,
		setup: func(fs *flag.FlagSet) runFunc {
			return func(ctx context.Context, e *env, args []string) error {
				raw, err := e.api.get(ctx, "/v1/ca", nil)
				if err != nil {
					return err
				}
				if e.json {
					return writeJSON(e.stdout, raw)
				}
				var ca caInfo
				if err := decode(raw, "CA", &ca); err != nil {
					return err
				}
				now := e.now()
				rows := [][2]string{
					{"fingerprint", ca.Fingerprint},
					{"valid from", timeAndAge(now, ca.NotBefore)},
					{"ends", ca.NotAfter.Format(time.RFC3339)},
					{"renews from", ca.RenewsFrom.Format(time.RFC3339)},
				}
				for _, c := range ca.Earlier {
					state := "ends " + c.NotAfter.Format(time.DateOnly)
					if c.Ended {
						state = "ended " + c.NotAfter.Format(time.DateOnly)
					}
					rows = append(rows, [2]string{"earlier", fmt.Sprintf("%s (%s)", c.Fingerprint, state)})
				}
				members := fmt.Sprintf("%d hold the current certificate", ca.Members.Current)
				if ca.Members.Earlier > 0 {
					members += fmt.Sprintf(", %d an earlier one (they learn it at their next direct check-in)", ca.Members.Earlier)
				}
				if ca.Members.Unknown > 0 {
					members += fmt.Sprintf(", %d do not say (older versions)", ca.Members.Unknown)
				}
				return writeFields(e.stdout, append(rows, [2]string{"members", members}))
			}
		},
	}
}
