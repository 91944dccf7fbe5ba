package cli

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// agentJSON is an agent as the API shows it, seen secondsAgo before testNow.
func agentJSON(id, host, office string, revision int, compliant bool, secondsAgo int, items ...string) string {
	return fmt.Sprintf(`{"id":%q,"hostname":%q,"office":%q,"role":"agent","address":"10.1.0.%d","addresses":["10.1.0.%d"],`+
		`"last_seen":%q,"connected":%v,"revision":%d,"compliant":%v,"items":[%s],"enrolled":"2025-05-01T12:00:00Z","version":"dev"}`,
		id, host, office, len(id), len(id), testNow.Add(-time.Duration(secondsAgo)*time.Second).Format(time.RFC3339),
		secondsAgo < 300, revision, compliant, strings.Join(items, ","))
}

func itemJSON(id, status, message string) string {
	kind, _, _ := strings.Cut(id, "/")
	return fmt.Sprintf(`{"id":%q,"kind":%q,"status":%q,"message":%q,"at":"2025-06-01T11:59:00Z"}`, id, kind, status, message)
}

const relayJSON = `{"id":"rl-1","hostname":"relay-1","office":"berlin","role":"relay","address":"10.1.0.5","last_seen":"2025-06-01T11:59:59Z","connected":true,"revision":4,"compliant":false,"items":[]}`

var (
	pc1 = agentJSON("ag-1", "pc-1", "berlin", 4, true, 12, itemJSON("package/hello", "compliant", ""))
	pc2 = agentJSON("ag-22", "pc-2", "berlin", 3, false, 600, itemJSON("package/hello", "compliant", ""))
	pc3 = agentJSON("ag-333", "pc-3", "berlin", 4, false, 5,
		itemJSON("package/hello", "failed", "download: checksum mismatch from relay http://10.1.0.5:8090"),
		itemJSON("patch/kb1", "not_applicable", ""))
	pc4 = agentJSON("ag-4444", "pc-4", "hamburg", 0, false, 90)
)

func officeAt(name string, revision int) string {
	return fmt.Sprintf(`{"name":%q,"mode":"direct","checkin_interval":"2m0s","revision":%d,"agents":3}`, name, revision)
}

func TestAgentListShow(t *testing.T) {
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "list tells yes, pending and no against each office's revision",
			args: []string{"agent", "list"},
			api: []exchange{
				{method: "GET", target: "/v1/offices", answer: `{"offices":[` + officeAt("berlin", 4) + `,` + officeAt("hamburg", 1) + `]}`},
				{method: "GET", target: "/v1/agents", answer: `{"agents":[` + pc1 + `,` + pc2 + `,` + pc3 + `,` + pc4 + `]}`},
			},
			want: want{stdout: "" +
				"ID       HOSTNAME  OFFICE   ADDRESS   LAST SEEN  REVISION  COMPLIANT\n" +
				"ag-1     pc-1      berlin   10.1.0.4  12s ago    4         yes\n" +
				"ag-22    pc-2      berlin   10.1.0.5  10m ago    3         pending\n" +
				"ag-333   pc-3      berlin   10.1.0.6  5s ago     4         no\n" +
				"ag-4444  pc-4      hamburg  10.1.0.7  1m ago     0         pending\n"},
		},
		{
			name: "list one office",
			args: []string{"agent", "list", "--office", "berlin"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 4)},
				{method: "GET", target: "/v1/agents?office=berlin", answer: `{"agents":[` + pc1 + `]}`},
			},
			want: want{stdout: "" +
				"ID    HOSTNAME  OFFICE  ADDRESS   LAST SEEN  REVISION  COMPLIANT\n" +
				"ag-1  pc-1      berlin  10.1.0.4  12s ago    4         yes\n"},
		},
		{
			name: "list json asks only for the agents",
			args: []string{"agent", "list", "--office", "berlin", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents?office=berlin", answer: `{"agents":[` + pc1 + `,` + pc3 + `]}`}},
			want: want{stdoutJSON: `{"agents":[` + pc1 + `,` + pc3 + `]}`},
		},
		{
			name: "list of an unknown office",
			args: []string{"agent", "list", "--office", "paris"},
			api:  []exchange{{method: "GET", target: "/v1/offices/paris", status: 404, answer: `{"error":"no office \"paris\""}`}},
			want: want{code: 1, stderr: "outpost: agent list: no office \"paris\"\n"},
		},
		{
			name: "list empty",
			args: []string{"agent", "list", "--office", "berlin"},
			api: []exchange{
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 0)},
				{method: "GET", target: "/v1/agents?office=berlin", answer: `{"agents":[]}`},
			},
			want: want{stderr: "no agents enrolled in office berlin yet; enroll one with a token from: outpost token create --office NAME\n"},
		},
		{
			name: "show with the compliance of each item",
			args: []string{"agent", "show", "ag-333"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/ag-333", answer: pc3},
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 4)},
			},
			want: want{stdout: "" +
				"id:         ag-333\n" +
				"hostname:   pc-3\n" +
				"office:     berlin\n" +
				"role:       agent\n" +
				"address:    10.1.0.6\n" +
				"connected:  yes\n" +
				"last seen:  2025-06-01T11:59:55Z (5s ago)\n" +
				"revision:   4\n" +
				"compliant:  no\n" +
				"enrolled:   2025-05-01T12:00:00Z (31d ago)\n" +
				"version:    dev\n" +
				"\n" +
				"ITEM           KIND     STATUS          AT      MESSAGE\n" +
				"package/hello  package  failed          1m ago  download: checksum mismatch from relay http://10.1.0.5:8090\n" +
				"patch/kb1      patch    not_applicable  1m ago  \n"},
		},
		{
			// What hosts say is printed escaped: an ESC from a host cannot
			// act on the admin's terminal, nor a newline forge a row.
			name: "show an agent that refused its upgrade, with what hosts said escaped",
			args: []string{"agent", "show", "ag-5"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/ag-5", answer: strings.Replace(agentJSON("ag-5", "pc-5", "berlin", 4, true, 5,
					`{"id":"package/hello","kind":"package","status":"failed","message":"hook said \u001b]0;pwned\u0007\nplatform  ok","at":"2025-06-01T11:59:00Z"}`),
					`"version":"dev"`, `"version":"1.5.2","upgrade_problem":"the new executable at /usr/bin/outpost-agent was refused, so version 1.5.2 runs on: asking its version: exit status 1: \u001b[2Jbad"`, 1)},
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 4)},
			},
			want: want{stdout: "" +
				"id:         ag-5\n" +
				"hostname:   pc-5\n" +
				"office:     berlin\n" +
				"role:       agent\n" +
				"address:    10.1.0.4\n" +
				"connected:  yes\n" +
				"last seen:  2025-06-01T11:59:55Z (5s ago)\n" +
				"revision:   4\n" +
				"compliant:  yes\n" +
				"enrolled:   2025-05-01T12:00:00Z (31d ago)\n" +
				"version:    1.5.2\n" +
				`upgrade:    the new executable at /usr/bin/outpost-agent was refused, so version 1.5.2 runs on: asking its version: exit status 1: \x1b[2Jbad` + "\n" +
				"\n" +
				"ITEM           KIND     STATUS  AT      MESSAGE\n" +
				`package/hello  package  failed  1m ago  hook said \x1b]0;pwned\x07\nplatform  ok` + "\n"},
		},
		{
			name: "show an agent that restarted itself after a hang",
			args: []string{"agent", "show", "ag-6"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/ag-6", answer: strings.Replace(agentJSON("ag-6", "pc-6", "berlin", 4, true, 5,
					`{"id":"package/hello","kind":"package","status":"compliant","message":"","at":"2025-06-01T11:59:00Z"}`),
					`"version":"dev"`, `"version":"1.5.2","last_hang":"restarted itself at 2025-06-01T10:00:00Z: no progress for 40m0s while checking in (goroutine stacks in /var/lib/outpost-agent/hang.txt)"`, 1)},
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 4)},
			},
			want: want{stdout: "" +
				"id:         ag-6\n" +
				"hostname:   pc-6\n" +
				"office:     berlin\n" +
				"role:       agent\n" +
				"address:    10.1.0.4\n" +
				"connected:  yes\n" +
				"last seen:  2025-06-01T11:59:55Z (5s ago)\n" +
				"revision:   4\n" +
				"compliant:  yes\n" +
				"enrolled:   2025-05-01T12:00:00Z (31d ago)\n" +
				"version:    1.5.2\n" +
				"hang:       restarted itself at 2025-06-01T10:00:00Z: no progress for 40m0s while checking in (goroutine stacks in /var/lib/outpost-agent/hang.txt)\n" +
				"\n" +
				"ITEM           KIND     STATUS     AT      MESSAGE\n" +
				"package/hello  package  compliant  1m ago  \n"},
		},
		{
			name: "show an agent behind its office",
			args: []string{"agent", "show", "ag-22"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/ag-22", answer: pc2},
				{method: "GET", target: "/v1/offices/berlin", answer: officeAt("berlin", 4)},
			},
			want: want{stdout: "" +
				"id:         ag-22\n" +
				"hostname:   pc-2\n" +
				"office:     berlin\n" +
				"role:       agent\n" +
				"address:    10.1.0.5\n" +
				"connected:  no\n" +
				"last seen:  2025-06-01T11:50:00Z (10m ago)\n" +
				"revision:   3 (office is at 4)\n" +
				"compliant:  pending\n" +
				"enrolled:   2025-05-01T12:00:00Z (31d ago)\n" +
				"version:    dev\n" +
				"\n" +
				"ITEM           KIND     STATUS     AT      MESSAGE\n" +
				"package/hello  package  compliant  1m ago  \n"},
		},
		{
			name: "show json asks only for the agent",
			args: []string{"agent", "show", "ag-1", "--output", "json"},
			api:  []exchange{{method: "GET", target: "/v1/agents/ag-1", answer: pc1}},
			want: want{stdoutJSON: pc1},
		},
		{
			name: "show unknown, as the coordinator says it, says how to find it once",
			args: []string{"agent", "show", "pc-9"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/pc-9", status: 404, answer: `{"error":"no agent has the id or hostname \"pc-9\": see outpost agent list"}`},
				{method: "GET", target: "/v1/agents?q=pc-9", answer: `{"agents":[]}`},
			},
			want: want{code: 1, stderr: "outpost: agent show: no agent has the id or hostname \"pc-9\"; name an agent by its id, ag- (rl- for a relay) and 16 hex digits or their start, or by its hostname: outpost agent list or outpost agent search TEXT finds it\n"},
		},
		{
			name: "show unknown says what a full id is and how to find it",
			args: []string{"agent", "show", "ag-9"},
			api: []exchange{
				{method: "GET", target: "/v1/agents/ag-9", status: 404, answer: `{"error":"member ag-9: not found"}`},
				{method: "GET", target: "/v1/agents?q=ag-9", answer: `{"agents":[]}`},
			},
			want: want{code: 1, stderr: "outpost: agent show: member ag-9: not found; name an agent by its id, ag- (rl- for a relay) and 16 hex digits or their start, or by its hostname: outpost agent list or outpost agent search TEXT finds it\n"},
		},
		{
			name: "show without an id",
			args: []string{"agent", "show"},
			want: want{code: 2, stderrHas: []string{"outpost: agent show: missing ID"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

// rolloutAPI fakes an office whose agents move through a list of states, one
// per poll of the agents; the last state stays.
func rolloutAPI(t *testing.T, office string, revision int, states ...[]string) *fakeAPI {
	t.Helper()
	var mu sync.Mutex
	polls := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/offices/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != office {
			writeAnswer(w, 404, `{"error":"no office \"`+r.PathValue("name")+`\"; see outpost office list"}`)
			return
		}
		writeAnswer(w, 200, officeAt(office, revision))
	})
	mux.HandleFunc("GET /v1/agents", func(w http.ResponseWriter, r *http.Request) {
		if got := r.URL.Query().Get("office"); got != office {
			t.Errorf("agents of office %q asked, want %q", got, office)
		}
		mu.Lock()
		state := states[min(polls, len(states)-1)]
		polls++
		mu.Unlock()
		writeAnswer(w, 200, `{"agents":[`+strings.Join(state, ",")+`]}`)
	})
	return newRoutedAPI(t, mux)
}

func TestAgentWait(t *testing.T) {
	pc2done := agentJSON("ag-22", "pc-2", "berlin", 4, true, 1, itemJSON("package/hello", "compliant", ""))
	pc3done := agentJSON("ag-333", "pc-3", "berlin", 4, true, 1, itemJSON("package/hello", "compliant", ""))
	fresh := agentJSON("ag-55555", "pc-5", "berlin", 4, false, 1)

	tests := []struct {
		name   string
		args   []string
		states [][]string
		want   want
	}{
		{
			name: "succeeds once enough agents comply, printing each change",
			args: []string{"agent", "wait", "--office", "berlin", "--count", "3", "--poll", "5ms"},
			states: [][]string{
				{pc1, pc2, pc3, relayJSON},
				{pc1, pc2, pc3, relayJSON},
				{pc1, pc2done, pc3, relayJSON},
				{pc1, pc2done, pc3done, relayJSON},
			},
			want: want{stdout: "" +
				"office berlin revision 4: 1 of 3 agents compliant (3 enrolled)\n" +
				"office berlin revision 4: 2 of 3 agents compliant (3 enrolled)\n" +
				"office berlin revision 4: 3 of 3 agents compliant (3 enrolled)\n"},
		},
		{
			name:   "json prints progress on stderr and the agents on stdout",
			args:   []string{"agent", "wait", "--office", "berlin", "--count", "1", "--output", "json"},
			states: [][]string{{pc1}},
			want: want{stdoutJSON: `{"agents":[` + pc1 + `]}`,
				stderr: "office berlin revision 4: 1 of 1 agents compliant (1 enrolled)\n"},
		},
		{
			name:   "times out saying which agents are missing and why",
			args:   []string{"agent", "wait", "--office", "berlin", "--count", "5", "--poll", "5ms", "--timeout", "400ms"},
			states: [][]string{{pc1, pc2, pc3, fresh, relayJSON}},
			want: want{code: 1,
				stdout: "office berlin revision 4: 1 of 5 agents compliant (4 enrolled)\n",
				stderr: "" +
					"outpost: agent wait: timed out after 400ms: 1 of 5 agents compliant at revision 4 in office berlin; not there yet:\n" +
					"  pc-2 (ag-22): at revision 3, the office is at 4; offline, last seen 10m ago\n" +
					"  pc-3 (ag-333): package/hello failed: download: checksum mismatch from relay http://10.1.0.5:8090\n" +
					"  pc-5 (ag-55555): no compliance report yet\n" +
					"  1 agent not enrolled yet (4 of 5 enrolled)\n"},
		},
		{
			name:   "an unknown office ends the wait at once",
			args:   []string{"agent", "wait", "--office", "paris", "--count", "1"},
			states: [][]string{{}},
			want:   want{code: 1, stderr: "outpost: agent wait: no office \"paris\"; see outpost office list\n"},
		},
		{
			name: "without --count",
			args: []string{"agent", "wait", "--office", "berlin"},
			want: want{code: 2, stderrHas: []string{"outpost: agent wait: missing --count N"}},
		},
		{
			name: "without --office",
			args: []string{"agent", "wait", "--count", "3"},
			want: want{code: 2, stderrHas: []string{"outpost: agent wait: missing --office NAME"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f *fakeAPI
			if tt.states != nil {
				f = rolloutAPI(t, "berlin", 4, tt.states...)
			} else {
				f = newFakeAPI(t)
			}
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

// TestAgentWaitRetries checks that a coordinator failing for a while (as
// while it restarts) does not end the wait.
func TestAgentWaitRetries(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/offices/berlin", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n <= 2 {
			writeAnswer(w, 503, `{"error":"the store is not open yet; try again"}`)
			return
		}
		writeAnswer(w, 200, officeAt("berlin", 4))
	})
	mux.HandleFunc("GET /v1/agents", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 200, `{"agents":[`+pc1+`]}`)
	})
	f := newRoutedAPI(t, mux)
	want{
		stdout: "office berlin revision 4: 1 of 1 agents compliant (1 enrolled)\n",
		stderr: "the store is not open yet; try again; trying again every 5ms\n",
	}.check(t, run(t, f, "agent", "wait", "--office", "berlin", "--count", "1", "--poll", "5ms"))
}

// TestAgentWaitNeverAnswered checks the timeout message when no poll ever
// got through.
func TestAgentWaitNeverAnswered(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/offices/berlin", func(w http.ResponseWriter, r *http.Request) {
		writeAnswer(w, 502, `{"error":"bad gateway"}`)
	})
	f := newRoutedAPI(t, mux)
	want{code: 1, stderrHas: []string{
		"bad gateway; trying again every 5ms\n",
		"outpost: agent wait: timed out after 100ms before the coordinator answered: bad gateway\n",
	}}.check(t, run(t, f, "agent", "wait", "--office", "berlin", "--count", "1", "--poll", "5ms", "--timeout", "100ms"))
}

func TestCompliance(t *testing.T) {
	tests := []struct {
		name     string
		a        agent
		revision int64
		want     string
	}{
		{"compliant", agent{Compliant: true, Revision: 4, Items: []agentItem{{}}}, 4, "yes"},
		{"behind", agent{Revision: 3, Items: []agentItem{{Status: "failed"}}}, 4, "pending"},
		{"no report yet", agent{Revision: 4}, 4, "pending"},
		{"failed at the current revision", agent{Revision: 4, Items: []agentItem{{Status: "failed"}}}, 4, "no"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := compliance(tt.a, tt.revision); got != tt.want {
				t.Errorf("compliance = %q, want %q", got, tt.want)
			}
		})
	}
}

// When the coordinator finds no agent by what was typed (an id, the start
// of one, a hostname), the agents whose id or hostname contains it are
// named. The fake coordinator answers 404 for any name.
func TestAgentNotFoundHint(t *testing.T) {
	notFound := func(method, target, id string) exchange {
		return exchange{method: method, target: target, status: 404, answer: `{"error":"member ` + id + `: not found"}`}
	}
	six := make([]string, 6)
	for i := range six {
		six[i] = agentJSON(fmt.Sprintf("ag-%d", i), fmt.Sprintf("pc-%d", i), "berlin", 1, true, 1)
	}
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "show by hostname names the agent",
			args: []string{"agent", "show", "pc-1"},
			api: []exchange{notFound("GET", "/v1/agents/pc-1", "pc-1"),
				{method: "GET", target: "/v1/agents?q=pc-1", answer: `{"agents":[` + pc1 + `]}`}},
			want: want{code: 1, stderr: "outpost: agent show: member pc-1: not found; \"pc-1\" is part of ag-1 (pc-1)\n"},
		},
		{
			name: "runs by a short id",
			args: []string{"agent", "runs", "ag-3"},
			api: []exchange{notFound("GET", "/v1/agents/ag-3/runs", "ag-3"),
				{method: "GET", target: "/v1/agents?q=ag-3", answer: `{"agents":[` + pc3 + `]}`}},
			want: want{code: 1, stderr: "outpost: agent runs: member ag-3: not found; \"ag-3\" is part of ag-333 (pc-3)\n"},
		},
		{
			name: "move with many matches shows a few",
			args: []string{"agent", "move", "pc", "--office", "hamburg"},
			api: []exchange{{method: "POST", target: "/v1/agents/pc/move", body: `{"office":"hamburg"}`, status: 404, answer: `{"error":"member pc: not found"}`},
				{method: "GET", target: "/v1/agents?q=pc", answer: `{"agents":[` + strings.Join(six, ",") + `]}`}},
			want: want{code: 1, stderr: "outpost: agent move: member pc: not found; \"pc\" is part of " +
				"ag-0 (pc-0), ag-1 (pc-1), ag-2 (pc-2), ag-3 (pc-3), ag-4 (pc-4), and 1 more (outpost agent search pc)\n"},
		},
		{
			name: "an unknown office is not about the agent",
			args: []string{"agent", "move", "ag-1", "--office", "paris"},
			api: []exchange{{method: "POST", target: "/v1/agents/ag-1/move", body: `{"office":"paris"}`, status: 404,
				answer: `{"error":"office paris does not exist (outpost office list)"}`}},
			want: want{code: 1, stderr: "outpost: agent move: office paris does not exist (outpost office list)\n"},
		},
		{
			name: "a failed search still gives the hint",
			args: []string{"agent", "runs", "pc-1"},
			api: []exchange{notFound("GET", "/v1/agents/pc-1/runs", "pc-1"),
				{method: "GET", target: "/v1/agents?q=pc-1", status: 403, answer: `{"error":"no"}`}},
			want: want{code: 1, stderrHas: []string{"member pc-1: not found; name an agent by its id, ag- (rl- for a relay) and 16 hex digits or their start"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

func TestAgentRemove(t *testing.T) {
	pc := `{"id":"ag-3f9c2a0011223344","hostname":"pc-17","office":"berlin","role":"agent"}`
	tests := []struct {
		name string
		args []string
		api  []exchange
		want want
	}{
		{
			name: "by hostname: looked up, then the member found is removed",
			args: []string{"agent", "rm", "pc-17"},
			api: []exchange{{method: "GET", target: "/v1/agents/pc-17", answer: pc},
				{method: "DELETE", target: "/v1/agents/ag-3f9c2a0011223344", status: 204}},
			want: want{stdout: "agent ag-3f9c2a0011223344 (pc-17) removed; office berlin's gossip key is being replaced\n"},
		},
		{
			name: "unknown: nothing removed, and a hint",
			args: []string{"agent", "rm", "pc-99"},
			api: []exchange{{method: "GET", target: "/v1/agents/pc-99", status: 404, answer: `{"error":"member pc-99: not found"}`},
				{method: "GET", target: "/v1/agents?q=pc-99", answer: `{"agents":[]}`}},
			want: want{code: 1, stderrHas: []string{"member pc-99: not found"}},
		},
		{
			name: "refused",
			args: []string{"agent", "rm", "pc-17"},
			api: []exchange{{method: "GET", target: "/v1/agents/pc-17", answer: pc},
				{method: "DELETE", target: "/v1/agents/ag-3f9c2a0011223344", status: 403, answer: `{"error":"tina may not remove agents"}`}},
			want: want{code: 1, stderr: "outpost: agent rm: tina may not remove agents\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, tt.api...)
			tt.want.check(t, run(t, f, tt.args...))
		})
	}
}

func TestOfficeRotateKey(t *testing.T) {
	f := newFakeAPI(t, exchange{method: "POST", target: "/v1/offices/berlin/gossip-key/rotate", status: 202, answer: `{"office":"berlin","rotation":"install"}`})
	want{stdout: "office berlin: gossip key rotation started; members take the new key over the next check-in intervals\n"}.check(t, run(t, f, "office", "rotate-key", "berlin"))
}
