package store

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// appendRunWhole is how runs were kept before each had its key: the
// member's whole history decoded and written again for each run.
func appendRunWhole(tx *bolt.Tx, id string, r Report) error {
	b, err := tx.CreateBucketIfNotExists(bRuns)
	if err != nil {
		return err
	}
	var runs []Report
	if v := b.Get([]byte(id)); v != nil {
		if err := json.Unmarshal(v, &runs); err != nil {
			return err
		}
	}
	runs = append(runs, r)
	if len(runs) > MaxRuns {
		runs = runs[len(runs)-MaxRuns:]
	}
	v, err := json.Marshal(runs)
	if err != nil {
		return err
	}
	return b.Put([]byte(id), v)
}

func benchReport(seq uint64) Report {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Report{Revision: 1, At: at, Seq: seq}
	for k := range 10 {
		r.Items = append(r.Items, ItemStatus{ID: fmt.Sprintf("registry:/etc/app.conf#key-%d", k), Kind: "registry", Status: "compliant", At: at})
	}
	return r
}

// BenchmarkAppendRun adds one run (10 items) to a member among 2,000
// that keep 20 each, as every check-in does: the whole history rewritten
// (before) and one key added, the oldest dropped (now), side by side.
// Without fsync, which both pay alike.
//
//	go test -run '^$' -bench AppendRun -benchmem ./coordinator/internal/store/
func BenchmarkAppendRun(b *testing.B) {
	const members = 2000
	for _, way := range []struct {
		name   string
		append func(*bolt.Tx, string, Report) error
	}{{"whole-history", appendRunWhole}, {"run-per-key", appendRun}} {
		b.Run(way.name, func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "outpost.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			s.db.NoSync = true
			if err := s.db.Update(func(tx *bolt.Tx) error {
				for i := range members {
					for k := range MaxRuns {
						if err := way.append(tx, fmt.Sprint("ag-", i), benchReport(uint64(k+1))); err != nil {
							return err
						}
					}
				}
				return nil
			}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := range b.N {
				if err := s.db.Update(func(tx *bolt.Tx) error {
					return way.append(tx, fmt.Sprint("ag-", n%members), benchReport(uint64(MaxRuns+1+n)))
				}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOffices reads every office of 300, as every check-in does:
// decoded from the file (before), copied from the cache (Offices) and
// shared (OfficesReadOnly, what check-ins use), side by side.
//
//	go test -run '^$' -bench 'Offices$' -benchmem ./coordinator/internal/store/
func BenchmarkOffices(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "outpost.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.db.Update(func(tx *bolt.Tx) error {
		for o := range 300 {
			name := fmt.Sprintf("office-%03d", o)
			if err := put(tx, bOffices, name, Office{Name: name, Mode: "relay", CheckinInterval: 2 * time.Minute, TimeZone: "Europe/Berlin",
				Relays: []string{"https://relay-" + name + ":8090"}, Subnets: []string{fmt.Sprintf("10.%d.%d.0/24", o/250, o%250)},
				GossipKey: make([]byte, 32), Created: time.Now()}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	for _, way := range []struct {
		name string
		read func() ([]Office, error)
	}{
		{"decode", func() (out []Office, err error) {
			err = s.db.View(func(tx *bolt.Tx) error { out, err = list[Office](tx, bOffices, nil); return err })
			return out, err
		}},
		{"cached-copy", s.Offices},
		{"cached-shared", s.OfficesReadOnly},
	} {
		b.Run(way.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				if all, err := way.read(); err != nil || len(all) != 300 {
					b.Fatal(len(all), err)
				}
			}
		})
	}
}
