package boltstore

import (
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/jsctl/jsctl/event"
)

func benchStore(b *testing.B) *Store {
	b.Helper()
	s := New(filepath.Join(b.TempDir(), "ledger.db"))
	if err := s.Open(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchEvent(payload []byte) *event.Event {
	id, _ := event.NewID()
	return &event.Event{ID: id, Type: "bench.append", Payload: payload, CreatedAt: time.Now()}
}

// BenchmarkAppend measures group-committed appends from 64 concurrent
// writers (the NewEvent load), reporting events per commit.
func BenchmarkAppend(b *testing.B) {
	s := benchStore(b)
	payload := make([]byte, 256)
	start := txID(b, s)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, _, err := s.Append(benchEvent(payload), 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if commits := txID(b, s) - start; commits > 0 {
		b.ReportMetric(float64(b.N)/float64(commits), "events/commit")
	}
}

// BenchmarkAppendAndMark is the ledger's share of NewEvent: append, then a
// PUBLISHED mark that rides on a later commit.
func BenchmarkAppendAndMark(b *testing.B) {
	s := benchStore(b)
	payload := make([]byte, 256)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ReportAllocs()
	b.ResetTimer()
	var seq uint64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e := benchEvent(payload)
			if _, _, err := s.Append(e, 0); err != nil {
				b.Error(err)
				return
			}
			s.MarkPublished(e.ID, seqNext(&seq), "")
		}
	})
}

// BenchmarkGet measures EventStatus's read.
func BenchmarkGet(b *testing.B) {
	s := benchStore(b)
	payload := make([]byte, 256)
	ids := make([]ID, 1000)
	for i := range ids {
		e := benchEvent(payload)
		if _, _, err := s.Append(e, 0); err != nil {
			b.Fatal(err)
		}
		s.MarkPublished(e.ID, uint64(i+1), "")
		ids[i] = e.ID
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Get(ids[i%len(ids)], false); err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
}

// BenchmarkBoltUpdate is the baseline: one bbolt Update (and fsync) per event.
func BenchmarkBoltUpdate(b *testing.B) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "plain.db"), 0o600, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	payload := make([]byte, 256)
	b.ResetTimer()
	for range b.N {
		e := benchEvent(payload)
		if err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("events"))
			if err != nil {
				return err
			}
			return bk.Put(e.ID[:], payload)
		}); err != nil {
			b.Fatal(err)
		}
	}
}

func seqNext(p *uint64) uint64 { return atomic.AddUint64(p, 1) }

// BenchmarkRecordGroupSync is the ledger's share of consuming an event: a
// DELIVERED update queued, then the ack recorded durably, with 256 acks
// outstanding. OnePerCall has 256 callers recording one ack each; Batch16
// has 16 callers recording 16 acks per call, as Subscribe streams batch them.
func BenchmarkRecordGroupSync(b *testing.B) {
	for _, tc := range []struct {
		name           string
		callers, batch int
	}{{"OnePerCall", 256, 1}, {"Batch16", 16, 16}} {
		b.Run(tc.name, func(b *testing.B) {
			s := benchStore(b)
			if err := s.SaveGroup(event.DefaultGroup("g")); err != nil {
				b.Fatal(err)
			}
			payload := make([]byte, 256)
			us := make([]event.GroupUpdate, b.N)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 { // published events, appended by 64 writers
				wg.Go(func() {
					for i := int(next.Add(1) - 1); i < len(us); i = int(next.Add(1) - 1) {
						e := benchEvent(payload)
						if _, _, err := s.Append(e, 0); err != nil {
							b.Error(err)
							return
						}
						s.MarkPublished(e.ID, uint64(i+1), "")
						us[i] = event.GroupUpdate{ID: e.ID, Group: "g", Deliveries: 1, Sequence: uint64(i + 1), Time: time.Now()}
					}
				})
			}
			wg.Wait()
			next.Store(0)
			start := txID(b, s)
			b.SetParallelism(max(1, tc.callers/runtime.GOMAXPROCS(0)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				batch := make([]event.GroupUpdate, 0, tc.batch)
				flush := func() {
					if err := s.RecordGroupSync(b.Context(), batch...); err != nil {
						b.Error(err)
					}
					batch = batch[:0]
				}
				for pb.Next() {
					u := us[next.Add(1)-1]
					u.Outcome = event.OutcomeDelivered
					s.RecordGroup(u)
					u.Outcome = event.OutcomeAcked
					if batch = append(batch, u); len(batch) == tc.batch {
						flush()
					}
				}
				flush()
			})
			b.StopTimer()
			if commits := txID(b, s) - start; commits > 0 {
				b.ReportMetric(float64(b.N)/float64(commits), "events/commit")
			}
		})
	}
}
