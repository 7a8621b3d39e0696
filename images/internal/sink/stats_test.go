package sink

import (
	"fmt"
	"testing"
	"time"
)

func line(pod, inst string, seq int, ts time.Time) []byte {
	return []byte(fmt.Sprintf(`{"pod":%q,"instance":%q,"seq":%d,"request_id":"r","ts":%q}`, pod, inst, seq, ts.Format(time.RFC3339Nano)))
}

func TestGapsAndDuplicatesPerPodAndInstance(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	s := New("")
	s.now = func() time.Time { return now }
	for _, seq := range []int{1, 2, 4, 4, 5, 7} { // 3 and 6 missing, 4 twice
		s.Add(line("a", "i1", seq, now.Add(-time.Second)))
	}
	for _, seq := range []int{1, 2} { // a restarted container: a new sequence, not duplicates
		s.Add(line("a", "i2", seq, now.Add(-3*time.Second)))
	}
	s.Add(line("b", "j1", 1, now.Add(-2*time.Second)))
	s.Add([]byte("not json"))
	snap := s.Snapshot()
	a := snap.Sources["a"]
	if a.Received != 8 || a.Unique != 7 || a.Missing != 2 || a.Duplicated != 1 || a.Instances != 2 {
		t.Fatalf("pod a: %+v", a)
	}
	if snap.Total.Received != 9 || snap.Total.Missing != 2 || snap.Total.Duplicated != 1 {
		t.Fatalf("total: %+v", snap.Total)
	}
	if snap.Unparsed != 1 {
		t.Fatalf("unparsed %d", snap.Unparsed)
	}
	if snap.Lag.MinS != 1 || snap.Lag.MaxS != 3 || snap.Lag.Samples != 9 {
		t.Fatalf("lag: %+v", snap.Lag)
	}
}

func TestLagSamplesStayBounded(t *testing.T) {
	s := New("")
	now := time.Now()
	for i := 1; i <= maxLagSamples*2+10; i++ {
		s.Add(line("p", "i", i, now))
	}
	snap := s.Snapshot()
	if snap.Lag.Samples >= maxLagSamples || snap.Total.Unique != uint64(maxLagSamples*2+10) {
		t.Fatalf("samples %d unique %d", snap.Lag.Samples, snap.Total.Unique)
	}
}

func TestLargestBatchIsKept(t *testing.T) {
	s := New("")
	for _, n := range []int{3, 17, 5} {
		s.BatchDone(n)
	}
	snap := s.Snapshot()
	if snap.Batches != 3 || snap.MaxBatch != 17 {
		t.Errorf("batches %d, largest %d; want 3, 17", snap.Batches, snap.MaxBatch)
	}
}

func TestForgedLinesCannotHideLoss(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	s := New("tok")
	tokenLine := func(pod, inst string, seq uint64, token string) []byte {
		return []byte(fmt.Sprintf(`{"pod":%q,"token":%q,"instance":%q,"seq":%d,"request_id":"r","ts":%q}`, pod, token, inst, seq, now.Format(time.RFC3339Nano)))
	}
	for _, seq := range []uint64{1, 2, 4} { // 3 lost
		s.Add(tokenLine("a", "i1", seq, "tok"))
	}
	// Sequence numbers that would wrap the missing count to 0 if summed in uint64.
	s.Add(tokenLine("evil", "x1", 1<<63, "tok"))
	s.Add(tokenLine("evil", "x2", (1<<63)-1, "tok"))
	// Lines without the run's token are someone else's.
	s.Add(tokenLine("a", "i1", 3, "other"))
	s.Add(tokenLine("a", "i1", 3, ""))
	snap := s.Snapshot()
	if snap.Total.Missing != 1 || snap.Total.Received != 3 || snap.Unparsed != 2 || snap.Foreign != 2 {
		t.Fatalf("forged lines changed the counts: %+v unparsed %d foreign %d", snap.Total, snap.Unparsed, snap.Foreign)
	}
}

func TestMarkStartsAWindowThatCountsOnlyItsOwnLines(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 10, 0, time.UTC)
	s := New("")
	s.now = func() time.Time { return now }
	for _, seq := range []int{1, 2, 4, 4} { // 3 missing, 4 twice: before the mark
		s.Add(line("a", "i1", seq, now.Add(-5*time.Second)))
	}
	s.BatchDone(40)
	s.Mark()
	if snap := s.Snapshot(); snap.Total.Received != 0 || snap.Total.Missing != 0 || snap.Total.Duplicated != 0 || snap.MaxBatch != 0 || snap.Lag.Samples != 0 {
		t.Fatalf("right after the mark: %+v", snap)
	}
	for _, seq := range []int{5, 7, 7} { // 6 missing, 7 twice: in the window
		s.Add(line("a", "i1", seq, now.Add(-time.Second)))
	}
	s.Add(line("a", "i1", 3, now.Add(-time.Second))) // the old gap filled late: not a new line lost or found
	s.Add(line("b", "j1", 1, now.Add(-time.Second))) // a pod new in the window
	s.BatchDone(3)
	snap := s.Snapshot()
	if snap.Total.Received != 5 || snap.Total.Missing != 1 || snap.Total.Duplicated != 1 || snap.Total.Unique != 4 {
		// a: received 5, 7, 7, 3 (4 lines, 3 new numbers), 6 missing above the mark's 4; b: 1 line
		t.Fatalf("window totals: %+v", snap.Total)
	}
	if snap.MaxBatch != 3 || snap.Lag.MaxS != 1 || snap.Lag.Samples != 5 {
		t.Fatalf("window batches %d, lag %+v", snap.MaxBatch, snap.Lag)
	}
}
