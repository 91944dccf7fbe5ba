package cli

import (
	"strings"
	"testing"
)

const (
	berlinJSON = `{"name":"berlin","description":"Berlin branch","location":"Berlin, DE","mode":"relay",` +
		`"relays":["http://10.1.0.5:8090"],"checkin_interval":"2m0s","time_zone":"Europe/Berlin","subnets":["10.1.0.0/16","192.168.7.0/24"],"egress":["203.0.113.7/32"],"revision":3,"created":"2025-05-29T12:00:00Z","agents":12}`
	hamburgJSON = `{"name":"hamburg","description":"","location":"","mode":"direct","relays":[],` +
		`"checkin_interval":"5m0s","revision":0,"created":"2025-06-01T11:59:00Z","agents":0}`
)

func TestOffice(t *testing.T) {
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "add with only a name sends only the name",
			args: []string{"office", "add", "hamburg"},
			api: []exchange{{method: "POST", target: "/v1/offices", ctype: "application/json",
				body: `{"name":"hamburg"}`, status: 201, answer: hamburgJSON}},
			want: want{stdout: "office hamburg created (mode direct, check-in every 5m0s)\n"},
		},
		{
			name: "add with every flag, flags after and before the name",
			args: []string{"office", "add", "--description", "Berlin branch", "berlin", "--location", "Berlin, DE",
				"--mode", "relay", "--relay", "http://10.1.0.5:8090", "--relay", "http://10.1.0.6:8090", "--interval", "2m"},
			api: []exchange{{method: "POST", target: "/v1/offices",
				body: `{"name":"berlin","description":"Berlin branch","location":"Berlin, DE","mode":"relay",` +
					`"relays":["http://10.1.0.5:8090","http://10.1.0.6:8090"],"checkin_interval":"2m"}`,
				status: 201, answer: berlinJSON}},
			want: want{stdout: "office berlin created (mode relay, check-in every 2m0s)\n"},
		},
		{
			name: "add json",
			args: []string{"--output", "json", "office", "add", "berlin"},
			api:  []exchange{{method: "POST", target: "/v1/offices", body: `{"name":"berlin"}`, status: 201, answer: berlinJSON}},
			want: want{stdoutJSON: berlinJSON},
		},
		{
			name: "add refused shows the API's message",
			args: []string{"office", "add", "Berlin"},
			api: []exchange{{method: "POST", target: "/v1/offices", body: `{"name":"Berlin"}`, status: 400,
				answer: `{"error":"office name \"Berlin\": use 1-63 of a-z, 0-9 and '-'"}`}},
			want: want{code: 1, stderr: "outpost: office add: office name \"Berlin\": use 1-63 of a-z, 0-9 and '-'\n"},
		},
		{
			name: "add without a name",
			args: []string{"office", "add"},
			want: want{code: 2, stderrHas: []string{"outpost: office add: missing NAME\n", "Usage: outpost office add NAME [flags]"}},
		},
		{
			name: "add with two names",
			args: []string{"office", "add", "berlin", "hamburg"},
			want: want{code: 2, stderrHas: []string{`outpost: office add: unexpected argument "hamburg"`}},
		},
		{
			name: "add with a wrong mode",
			args: []string{"office", "add", "berlin", "--mode", "mesh"},
			want: want{code: 2, stderrHas: []string{`outpost: office add: --mode "mesh": want direct, relay or distribution`}},
		},
		{
			name: "add with a relay that is no URL",
			args: []string{"office", "add", "berlin", "--relay", "10.1.0.5:8090"},
			want: want{code: 2, stderrHas: []string{`--relay: want an http:// or https:// URL`}},
		},
		{
			name: "add with a bad interval",
			args: []string{"office", "add", "berlin", "--interval", "often"},
			want: want{code: 2, stderrHas: []string{`invalid value "often" for flag -interval`}},
		},
		{
			name: "add with an unknown flag",
			args: []string{"office", "add", "berlin", "--colour", "red"},
			want: want{code: 2, stderrHas: []string{"flag provided but not defined: -colour"}},
		},
		{
			name: "list",
			args: []string{"office", "list"},
			api:  []exchange{{method: "GET", target: "/v1/offices", answer: `{"offices":[` + berlinJSON + `,` + hamburgJSON + `]}`}},
			want: want{stdout: "" +
				"NAME     MODE    INTERVAL  TIME ZONE      SUBNETS                     REVISION  AGENTS  LOCATION    DESCRIPTION\n" +
				"berlin   relay   2m0s      Europe/Berlin  10.1.0.0/16,192.168.7.0/24  3         12      Berlin, DE  Berlin branch\n" +
				"hamburg  direct  5m0s      -              -                           0         0       -           \n"},
		},
		{
			name: "list json",
			args: []string{"office", "list", "--output=json"},
			api:  []exchange{{method: "GET", target: "/v1/offices", answer: `{"offices":[` + berlinJSON + `]}`}},
			want: want{stdoutJSON: `{"offices":[` + berlinJSON + `]}`},
		},
		{
			name: "list empty",
			args: []string{"office", "list"},
			api:  []exchange{{method: "GET", target: "/v1/offices", answer: `{"offices":[]}`}},
			want: want{stderr: "no offices yet; create one with: outpost office add NAME\n"},
		},
		{
			name: "list takes no arguments",
			args: []string{"office", "list", "berlin"},
			want: want{code: 2, stderrHas: []string{`unexpected argument "berlin"`}},
		},
		{
			name: "show",
			args: []string{"office", "show", "berlin"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON}},
			want: want{stdout: "" +
				"name:               berlin\n" +
				"description:        Berlin branch\n" +
				"location:           Berlin, DE\n" +
				"mode:               relay\n" +
				"relays:             http://10.1.0.5:8090\n" +
				"plain HTTP:         refused\n" +
				"check-in interval:  2m0s\n" +
				"time zone:          Europe/Berlin\n" +
				"subnets:            10.1.0.0/16, 192.168.7.0/24\n" +
				"egress:             203.0.113.7/32\n" +
				"policy revision:    3\n" +
				"agents:             12\n" +
				"gossip key:         in use\n" +
				"created:            2025-05-29T12:00:00Z (3d ago)\n"},
		},
		{
			name: "show a distribution office staging",
			args: []string{"office", "show", "lyon"},
			api: []exchange{{method: "GET", target: "/v1/offices/lyon", answer: `{"name":"lyon","mode":"distribution","distribution_server":"10.4.0.5:8090",` +
				`"relays":["https://10.4.0.5:8090"],"allow_plain_http":false,"checkin_interval":"2m0s","time_zone":"UTC","subnets":[],"revision":7,` +
				`"staging":{"revision":7,"released_revision":6,"artifacts":5,"staged":3,"bytes":2147483648,"staged_bytes":1073741824,"complete":false},` +
				`"created":"2025-05-29T12:00:00Z","agents":4}`}},
			want: want{stdout: "" +
				"name:                 lyon\n" +
				"description:          -\n" +
				"location:             -\n" +
				"mode:                 distribution\n" +
				"distribution server:  10.4.0.5:8090\n" +
				"staging:              revision 7: 3 of 5 artifacts (1.0 GiB of 2.0 GiB); agents told of revision 6\n" +
				"relays:               https://10.4.0.5:8090\n" +
				"plain HTTP:           refused\n" +
				"check-in interval:    2m0s\n" +
				"time zone:            UTC\n" +
				"subnets:              -\n" +
				"egress:               -\n" +
				"policy revision:      7\n" +
				"agents:               4\n" +
				"gossip key:           in use\n" +
				"created:              2025-05-29T12:00:00Z (3d ago)\n"},
		},
		{
			name: "add a distribution office",
			args: []string{"office", "add", "lyon", "--mode", "distribution", "--distribution-server", "10.4.0.5:8090", "--allow-plain-http=false"},
			api: []exchange{{method: "POST", target: "/v1/offices",
				body:   `{"name":"lyon","mode":"distribution","distribution_server":"10.4.0.5:8090","allow_plain_http":false}`,
				status: 201, answer: `{"name":"lyon","mode":"distribution","checkin_interval":"2m0s"}`}},
			want: want{stdout: "office lyon created (mode distribution, check-in every 2m0s)\n"},
		},
		{
			name: "show json",
			args: []string{"office", "show", "berlin", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON}},
			want: want{stdoutJSON: berlinJSON},
		},
		{
			name: "show unknown office",
			args: []string{"office", "show", "paris"},
			api: []exchange{{method: "GET", target: "/v1/offices/paris", status: 404,
				answer: `{"error":"no office \"paris\"; see outpost office list"}`}},
			want: want{code: 1, stderr: "outpost: office show: no office \"paris\"; see outpost office list\n"},
		},
		{
			name: "edit sends only the fields given",
			args: []string{"office", "edit", "berlin", "--interval", "5m", "--description", ""},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON},
				{method: "PATCH", target: "/v1/offices/berlin", ctype: "application/json",
					body: `{"checkin_interval":"5m","description":""}`, answer: strings.NewReplacer(`"2m0s"`, `"5m0s"`, `"Berlin branch"`, `""`).Replace(berlinJSON)}},
			want: want{stdout: "office berlin updated: checkin_interval: 2m0s → 5m0s; description: Berlin branch → -\n"},
		},
		{
			name: "edit empties the relays",
			args: []string{"office", "edit", "berlin", "--mode", "direct", "--relay", ""},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON},
				{method: "PATCH", target: "/v1/offices/berlin",
					body: `{"mode":"direct","relays":[]}`, answer: strings.NewReplacer(`"relay"`, `"direct"`, `["http://10.1.0.5:8090"]`, `[]`).Replace(berlinJSON)}},
			want: want{stdout: "office berlin updated: mode: relay → direct; relays: http://10.1.0.5:8090 → -\n"},
		},
		{
			name: "edit json",
			args: []string{"office", "edit", "berlin", "--location", "Berlin, DE", "--output", "json"},
			api: []exchange{{method: "PATCH", target: "/v1/offices/berlin",
				body: `{"location":"Berlin, DE"}`, answer: berlinJSON}},
			want: want{stdoutJSON: berlinJSON},
		},
		{
			name: "add with subnets and a time zone",
			args: []string{"office", "add", "berlin", "--subnet", "10.1.0.0/16", "--subnet", "192.168.7.0/24", "--time-zone", "Europe/Berlin"},
			api: []exchange{{method: "POST", target: "/v1/offices",
				body: `{"name":"berlin","subnets":["10.1.0.0/16","192.168.7.0/24"],"time_zone":"Europe/Berlin"}`, status: 201, answer: berlinJSON}},
			want: want{stdout: "office berlin created (mode relay, check-in every 2m0s)\n"},
		},
		{
			name: "edit egress",
			args: []string{"office", "edit", "berlin", "--egress", "203.0.113.7", "--egress", "198.51.100.0/29"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON},
				{method: "PATCH", target: "/v1/offices/berlin",
					body: `{"egress":["203.0.113.7","198.51.100.0/29"]}`, answer: strings.Replace(berlinJSON, `["203.0.113.7/32"]`, `["203.0.113.7/32","198.51.100.0/29"]`, 1)}},
			want: want{stdout: "office berlin updated: egress: 203.0.113.7/32 → 203.0.113.7/32,198.51.100.0/29\n"},
		},
		{
			name: "bad egress",
			args: []string{"office", "edit", "berlin", "--egress", "nat.example.org"},
			want: want{code: 2, stderrHas: []string{`--egress "nat.example.org": want an address or a CIDR range`}},
		},
		{
			name: "add with a subnet that is no CIDR",
			args: []string{"office", "add", "berlin", "--subnet", "10.1.0.0"},
			want: want{code: 2, stderrHas: []string{`--subnet "10.1.0.0": want a CIDR range`}},
		},
		{
			name: "overlapping subnets: the API names the owner",
			args: []string{"office", "edit", "hamburg", "--subnet", "10.1.2.0/24"},
			api: []exchange{{method: "GET", target: "/v1/offices/hamburg", answer: hamburgJSON}, {method: "PATCH", target: "/v1/offices/hamburg", body: `{"subnets":["10.1.2.0/24"]}`, status: 409,
				answer: `{"error":"subnet 10.1.2.0/24 overlaps 10.1.0.0/16 of office berlin: an address must belong to one office"}`}},
			want: want{code: 1, stderr: "outpost: office edit: subnet 10.1.2.0/24 overlaps 10.1.0.0/16 of office berlin: an address must belong to one office\n"},
		},
		{
			name: "edit empties the subnets and sets the time zone",
			args: []string{"office", "edit", "berlin", "--subnet", "", "--time-zone", "UTC"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON},
				{method: "PATCH", target: "/v1/offices/berlin",
					body: `{"subnets":[],"time_zone":"UTC"}`, answer: strings.NewReplacer(`["10.1.0.0/16","192.168.7.0/24"]`, `[]`, `"Europe/Berlin"`, `"UTC"`).Replace(berlinJSON)}},
			want: want{stdout: "office berlin updated: subnets: 10.1.0.0/16,192.168.7.0/24 → -; time_zone: Europe/Berlin → UTC\n"},
		},
		{
			name: "edit replaces the subnets",
			args: []string{"office", "edit", "berlin", "--subnet", "10.9.0.0/16", "--subnet", "10.8.0.0/16"},
			api: []exchange{{method: "GET", target: "/v1/offices/berlin", answer: berlinJSON},
				{method: "PATCH", target: "/v1/offices/berlin",
					body: `{"subnets":["10.9.0.0/16","10.8.0.0/16"]}`, answer: berlinJSON}},
			want: want{stdout: "office berlin unchanged: it had these settings already\n"},
		},
		{
			name: "edit without a change",
			args: []string{"office", "edit", "berlin"},
			want: want{code: 2, stderrHas: []string{"outpost: office edit: nothing to change"}},
		},
		{
			name: "rm",
			args: []string{"office", "rm", "hamburg"},
			api:  []exchange{{method: "DELETE", target: "/v1/offices/hamburg", status: 204}},
			want: want{stdout: "office hamburg removed\n"},
		},
		{
			name: "rm json prints nothing",
			args: []string{"office", "rm", "hamburg", "--output", "json"},
			api:  []exchange{{method: "DELETE", target: "/v1/offices/hamburg", status: 204}},
			want: want{},
		},
		{
			name: "rm while agents are in it",
			args: []string{"office", "rm", "berlin"},
			api: []exchange{{method: "DELETE", target: "/v1/offices/berlin", status: 409,
				answer: `{"error":"office berlin still has 12 agents; remove them first"}`}},
			want: want{code: 1, stderr: "outpost: office rm: office berlin still has 12 agents; remove them first\n"},
		},
		{
			name: "rm moving the computers",
			args: []string{"office", "rm", "hamburg", "--move-to", "berlin"},
			api:  []exchange{{method: "DELETE", target: "/v1/offices/hamburg?move_to=berlin", status: 204}},
			want: want{stdout: "office hamburg removed; its computers are in berlin now\n"},
		},
		{
			name: "rm moving to an unknown office",
			args: []string{"office", "rm", "hamburg", "--move-to", "paris"},
			api: []exchange{{method: "DELETE", target: "/v1/offices/hamburg?move_to=paris", status: 404,
				answer: `{"error":"office paris (move_to) does not exist: see outpost office list"}`}},
			want: want{code: 1, stderr: "outpost: office rm: office paris (move_to) does not exist: see outpost office list\n"},
		},
		{
			name: "rm moving to itself",
			args: []string{"office", "rm", "hamburg", "--move-to", "hamburg"},
			want: want{code: 2, stderrHas: []string{"--move-to hamburg is the office being removed"}},
		},
		{
			name: "names are escaped in the path",
			args: []string{"office", "show", "a/b"},
			api:  []exchange{{method: "GET", target: "/v1/offices/a%2Fb", status: 404, answer: `{"error":"no office"}`}},
			want: want{code: 1, stderr: "outpost: office show: no office\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}
