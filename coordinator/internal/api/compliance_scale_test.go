package api

import (
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
)

// complianceByDecoding is what the compliance collector counted before
// it read the store's tallies: every member decoded at every scrape. The
// tests hold the collector to it.
func complianceByDecoding(tb testing.TB, a *API) map[string]float64 {
	tb.Helper()
	members, err := a.d.Store.Members("")
	if err != nil {
		tb.Fatal(err)
	}
	current, err := a.revisions()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range members {
		if m.Role == "relay" || m.Report == nil {
			continue
		}
		out["outpost_coordinator_patches_missing,"+m.Office] += 0
		stale := currentReport(&m, current[m.Office]) == nil
		for _, it := range m.Report.Items {
			status := it.Status
			if stale {
				status = "pending"
			}
			out["outpost_coordinator_items,"+m.Office+","+status]++
			if strings.HasPrefix(it.ID, "patch/") && status != "compliant" && status != "not_applicable" {
				out["outpost_coordinator_patches_missing,"+m.Office]++
			}
		}
	}
	return out
}

// gather is what the collector says, by metric and labels.
func gather(tb testing.TB, reg *prometheus.Registry) map[string]float64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue()
		}
	}
	return got
}

// The collector follows every change that moves its figures: reports,
// a new revision (reports of the old one count pending), a member moved,
// a relay, a member removed, an office removed with its computers moved.
func TestComplianceCollectorFollowsChanges(t *testing.T) {
	srv, st, _ := newAPI(t)
	for _, o := range []string{"berlin", "paris"} {
		if err := st.CreateOffice(store.Office{Name: o, Mode: "direct", CheckinInterval: time.Minute, TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		if code, out := call(t, srv, "PUT", "/v1/offices/"+o+"/policy", "items: []\n", token); code != 200 {
			t.Fatalf("policy: %d %v", code, out)
		}
	}
	for i := range 6 {
		enrolAgent(t, st, []string{"berlin", "paris"}[i%2], fmt.Sprint("a", i), fmt.Sprint("pc-", i))
	}
	reg := prometheus.NewRegistry()
	a := &API{d: Deps{Store: st}, log: logging.Discard()}
	reg.MustRegister(a.ComplianceCollector())
	reportOf := func(office string, statuses ...string) *store.Report {
		p, err := st.Policy(office)
		if err != nil {
			t.Fatal(err)
		}
		r := &store.Report{Revision: p.Revision, At: time.Now()}
		for i, s := range statuses {
			r.Items = append(r.Items, store.ItemStatus{ID: fmt.Sprintf("patch/OUT-%d", i), Status: s},
				store.ItemStatus{ID: fmt.Sprintf("registry:/etc/x#%d", i), Status: s})
		}
		return r
	}
	update := func(id string, fn func(*store.Member)) func() {
		return func() {
			if _, err := st.UpdateMember(id, fn); err != nil {
				t.Fatal(err)
			}
		}
	}
	steps := []struct {
		name   string
		change func()
	}{
		{"nothing reported", func() {}},
		{"reports", func() {
			for i := range 6 {
				update(fmt.Sprint("a", i), func(m *store.Member) {
					m.Report = reportOf(m.Office, []string{"compliant", "failed", "pending", "not_applicable"}[i%4], "compliant")
				})()
			}
		}},
		{"new revision in berlin", func() {
			if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy", "items: []\n# again\n", token); code != 200 {
				t.Fatalf("policy: %d %v", code, out)
			}
			if _, err := st.RaiseRevision("berlin", 50); err != nil {
				t.Fatal(err)
			}
			if code, out := call(t, srv, "PUT", "/v1/offices/berlin/policy?force=true", "items: []\n# once more\n", token); code != 200 {
				t.Fatalf("policy: %d %v", code, out)
			}
		}},
		{"one reports the new revision", update("a0", func(m *store.Member) { m.Report = reportOf("berlin", "failed") })},
		{"moved", update("a1", func(m *store.Member) { m.Office = "berlin" })},
		{"became a relay", update("a2", func(m *store.Member) { m.Role = "relay" })},
		{"removed", func() {
			if _, err := st.DeleteMember("a3"); err != nil {
				t.Fatal(err)
			}
		}},
		{"office removed, computers moved", func() {
			if _, err := st.RemoveOffice("paris", "berlin"); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, step := range steps {
		step.change()
		got, want := gather(t, reg), complianceByDecoding(t, a)
		if !maps.Equal(got, want) {
			t.Fatalf("after %s the collector says %v, the members say %v", step.name, got, want)
		}
	}
}

// BenchmarkComplianceScrape is one scrape of the compliance collector
// with 20,000 agents in 300 offices, each with a last report of 10 items:
// as the collector counted before (every member decoded) and as it does
// (the store's running tallies), side by side.
//
//	go test -run '^$' -bench ComplianceScrape -benchmem ./coordinator/internal/api/
func BenchmarkComplianceScrape(b *testing.B) {
	st := scaleMembers(b, 20_000, 300, 10)
	a := &API{d: Deps{Store: st}, log: logging.Discard()}
	reg := prometheus.NewRegistry()
	reg.MustRegister(a.ComplianceCollector())
	if got, want := gather(b, reg), complianceByDecoding(b, a); !maps.Equal(got, want) {
		b.Fatalf("the collector says %v, the members say %v", got, want)
	}
	b.Run("decode-every-member", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			complianceByDecoding(b, a)
		}
	})
	b.Run("tallies", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			gather(b, reg)
		}
	})
}

// scaleMembers writes agents with reports of items items in offices
// straight into a bbolt file (through the store, each would be one
// fsync) and opens it as the store.
func scaleMembers(tb testing.TB, agents, offices, items int) *store.Store {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "store.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	put := func(tx *bolt.Tx, bucket, key string, v any) {
		bk, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			tb.Fatal(err)
		}
		enc, _ := json.Marshal(v)
		if err := bk.Put([]byte(key), enc); err != nil {
			tb.Fatal(err)
		}
	}
	statuses := []string{"compliant", "compliant", "compliant", "failed", "pending", "not_applicable"}
	if err := db.Update(func(tx *bolt.Tx) error {
		for o := range offices {
			name := fmt.Sprintf("office-%03d", o)
			put(tx, "offices", name, store.Office{Name: name, Mode: "direct", CheckinInterval: 2 * time.Minute, Created: now})
			put(tx, "policies", name, store.Policy{Office: name, Revision: 2, Applied: now, Signed: make([]byte, 600)})
		}
		for i := range agents {
			office := fmt.Sprintf("office-%03d", i%offices)
			r := &store.Report{Revision: uint64(1 + i%5/4), At: now, Seq: 1} // a fifth of the reports are of an older revision
			for k := range items {
				id := fmt.Sprintf("registry:/etc/app.conf#key-%d", k)
				if k%3 == 0 {
					id = fmt.Sprintf("patch/OUT-2026-%03d", k)
				}
				r.Items = append(r.Items, store.ItemStatus{ID: id, Kind: "registry", Status: statuses[(i+k)%len(statuses)], At: now})
			}
			id := fmt.Sprintf("ag-%016x", i)
			put(tx, "members", id, store.Member{ID: id, Hostname: fmt.Sprintf("pc-%05d", i), Office: office, Home: office, Role: "agent",
				Enrolled: now, LastSeen: now, Address: "10.0.0.1", GossipAddr: "10.0.0.1:7946", Report: r, AckedSeq: 1})
		}
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { st.Close() })
	return st
}
