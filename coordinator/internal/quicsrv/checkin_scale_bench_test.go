package quicsrv

import (
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"

	"github.com/outposthq/outpost/coordinator/internal/auth"
	"github.com/outposthq/outpost/coordinator/internal/ca"
	"github.com/outposthq/outpost/coordinator/internal/store"
	"github.com/outposthq/outpost/pkg/logging"
	"github.com/outposthq/outpost/pkg/wire"
)

// Fleet of BenchmarkCheckinAtScale: what a large coordinator holds.
const (
	scaleMembers = 20_000
	scaleOffices = 300
	scaleUsers   = 2_000
	scaleItems   = 10 // items of each report
)

// scaleOffice is the name of office o, and scaleAddr an address inside
// its subnet, so that placement keeps each agent where it is.
func scaleOffice(o int) string     { return fmt.Sprintf("office-%03d", o) }
func scaleAddr(o, host int) string { return fmt.Sprintf("10.%d.%d.%d", o/250, o%250, 1+host%250) }
func scaleMember(i int) string     { return fmt.Sprintf("ag-%016x", i) }

func scaleReport(seq uint64, at time.Time) store.Report {
	r := store.Report{Revision: 1, At: at, Seq: seq}
	for k := range scaleItems {
		r.Items = append(r.Items, store.ItemStatus{ID: fmt.Sprintf("registry:/etc/app.conf#key-%d", k), Kind: "registry",
			Status: "compliant", At: at})
	}
	return r
}

// scaleStore writes a fleet straight into a bbolt file, in one
// transaction (through the store, each member would be one fsync), and
// opens it as the store, which indexes it as it would an older file.
// Runs are written as the store keeps them (store/runs.go).
func scaleStore(tb testing.TB) *store.Store {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "store.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	put := func(tx *bolt.Tx, bucket, key string, v any) {
		b, err := tx.CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			tb.Fatal(err)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			tb.Fatal(err)
		}
		if err := b.Put([]byte(key), enc); err != nil {
			tb.Fatal(err)
		}
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for o := range scaleOffices {
			name := scaleOffice(o)
			put(tx, "offices", name, store.Office{Name: name, Mode: "direct", CheckinInterval: 2 * time.Minute, TimeZone: "Europe/Berlin",
				Subnets: []string{fmt.Sprintf("10.%d.%d.0/24", o/250, o%250)}, GossipKey: make([]byte, 32), Created: now})
			put(tx, "policies", name, store.Policy{Office: name, Revision: 1, YAML: "items: []\n", Applied: now, Signed: make([]byte, 600)})
			put(tx, "revisions", name, uint64(1))
		}
		for i := range scaleMembers {
			o := i % scaleOffices
			id, rep := scaleMember(i), scaleReport(store.MaxRuns, now)
			put(tx, "members", id, store.Member{ID: id, Hostname: fmt.Sprintf("pc-%05d", i), Office: scaleOffice(o), Home: scaleOffice(o),
				Role: "agent", Enrolled: now, LastSeen: now, Address: scaleAddr(o, i), Addresses: []string{scaleAddr(o, i)},
				GossipAddr: scaleAddr(o, i) + ":7946", Revision: 1, Version: "1.0.0", Report: &rep, AckedSeq: store.MaxRuns})
			for k := range store.MaxRuns {
				put(tx, "run_list", string(binary.BigEndian.AppendUint64(append([]byte(id), 0), uint64(k))), scaleReport(uint64(k+1), now))
			}
		}
		for u := range scaleUsers {
			user := store.User{Name: fmt.Sprintf("user-%04d", u), Role: "", Created: now,
				PasswordHash: "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"}
			if u%10 == 0 {
				user.NotBefore = now.Add(-time.Hour) // signed out everywhere once
			}
			user.Disabled = u%50 == 0
			put(tx, "users", user.Name, user)
		}
		return nil
	})
	if err != nil {
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

// scaleServer is a server over scaleStore, with technician access (the
// revocation list every answer carries) from a real authorization server.
func scaleServer(tb testing.TB) (*Server, *store.Store) {
	tb.Helper()
	st := scaleStore(tb)
	authority, err := ca.LoadOrCreate(tb.TempDir(), nil, 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		tb.Fatal(err)
	}
	as, err := auth.New(auth.Config{PerMinute: 10, KDF: auth.KDF{Time: 1, MemoryKiB: 64, Threads: 1}}, st, key, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Config{Version: "1.0.0"}, authority, st, nil, nil, logging.Discard(), prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	s.SetAccess(as)
	return s, st
}

// scaleCheckin is agent i's check-in with a new run numbered seq.
func scaleCheckin(i int, seq uint64, now time.Time) *wire.CheckinRequest {
	o := i % scaleOffices
	req := &wire.CheckinRequest{Hostname: fmt.Sprintf("pc-%05d", i), Revision: 1, Version: "1.0.0",
		Addresses: []string{scaleAddr(o, i)}, GossipAddress: scaleAddr(o, i) + ":7946",
		Report: &wire.Report{Revision: 1, AtUnix: now.Unix(), Seq: seq}}
	for k := range scaleItems {
		req.Report.Items = append(req.Report.Items, &wire.ItemReport{Id: fmt.Sprintf("registry:/etc/app.conf#key-%d", k), Kind: "registry",
			Status: wire.ItemReport_STATUS_COMPLIANT, AtUnix: now.Unix()})
	}
	return req
}

// BenchmarkCheckinAtScale runs the check-in handler (everything but QUIC)
// against a store of 20,000 agents (each with a report of 10 items and 20
// kept runs) in 300 offices, with 2,000 users: what one check-in costs a
// coordinator of that size. Check-ins come from many agents at once, as
// they do after a push, so that the store's batching shares the commits;
// cpu-ns/op is the process's CPU time per check-in.
//
//	go test -run '^$' -bench CheckinAtScale -benchmem ./coordinator/internal/quicsrv/
func BenchmarkCheckinAtScale(b *testing.B) {
	s, _ := scaleServer(b)
	now := time.Now()
	// Once, not timed: what the store reads the first time it is asked.
	if resp := s.checkin(scaleMember(0), scaleAddr(0, 0), scaleCheckin(0, store.MaxRuns+1, now)); resp.AsError() != nil {
		b.Fatal(resp.AsError())
	}
	var next atomic.Int64
	next.Store(1)
	b.ReportAllocs()
	b.SetParallelism(16)
	cpu := processCPU()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := int(next.Add(1))
			i := n % scaleMembers
			resp := s.checkin(scaleMember(i), scaleAddr(i%scaleOffices, i), scaleCheckin(i, uint64(store.MaxRuns+n), now))
			if err := resp.AsError(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time this process has used, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRevocations is the revocation list of a check-in answer with
// 2,000 users in the store: made by the verifier for each answer (before)
// and kept until a user changes (now), side by side.
//
//	go test -run '^$' -bench Revocations -benchmem ./coordinator/internal/quicsrv/
func BenchmarkRevocations(b *testing.B) {
	s, _ := scaleServer(b)
	v := s.verifier()
	b.Run("made-each-time", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if l, err := v.SignedRevocations(); err != nil || l == nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("kept", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if s.revocations() == nil {
				b.Fatal("no list")
			}
		}
	})
}
