// Package sink counts log lines exactly: per source pod and process instance, which
// sequence numbers arrived, which are missing (gaps) and which came more than once.
package sink

import (
	"sort"
	"sync"
	"time"

	"patternbench.local/images/internal/applog"
)

// maxLagSamples bounds memory: past it, lag samples are kept by reservoir-free thinning.
const maxLagSamples = 200000

// MaxSeq bounds a line's sequence number: no app process logs 2^40 lines in a run, and a
// larger one (forged) would make every earlier number count as missing.
const MaxSeq = 1 << 40

type instance struct {
	seen     map[uint64]struct{}
	maxSeq   uint64
	received uint64
	dups     uint64
	// The window (Mark): what it had counted when the window began, and the new sequence
	// numbers above the highest it had seen then.
	base  Counts
	floor uint64
	above uint64
}

// Stats is the sink's state; safe for concurrent use.
type Stats struct {
	mu        sync.Mutex
	pods      map[string]map[string]*instance // pod -> instance -> counts
	lags      []float64                       // seconds
	lagStride int
	lagCount  int
	unparsed  uint64
	foreign   uint64 // well-formed lines without the run's token: not ours, not counted
	token     string
	batches   uint64
	maxBatch  int
	now       func() time.Time
}

// New returns empty stats that count only lines carrying `token` ("": every line).
func New(token string) *Stats {
	return &Stats{pods: map[string]map[string]*instance{}, lagStride: 1, now: time.Now, token: token}
}

// Add records one raw line as received now.
func (s *Stats) Add(raw []byte) {
	line, err := applog.Parse(raw)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil || line.Pod == "" || line.Seq == 0 || line.Seq > MaxSeq {
		s.unparsed++
		return
	}
	if s.token != "" && line.Token != s.token {
		s.foreign++
		return
	}
	insts := s.pods[line.Pod]
	if insts == nil {
		insts = map[string]*instance{}
		s.pods[line.Pod] = insts
	}
	inst := insts[line.Instance]
	if inst == nil {
		inst = &instance{seen: map[uint64]struct{}{}}
		insts[line.Instance] = inst
	}
	inst.received++
	if _, dup := inst.seen[line.Seq]; dup {
		inst.dups++
	} else {
		inst.seen[line.Seq] = struct{}{}
		if line.Seq > inst.floor {
			inst.above++
		}
	}
	if line.Seq > inst.maxSeq {
		inst.maxSeq = line.Seq
	}
	if !line.Time.IsZero() {
		s.lagCount++
		if s.lagCount%s.lagStride == 0 {
			s.lags = append(s.lags, s.now().Sub(line.Time).Seconds())
			if len(s.lags) >= maxLagSamples {
				// Keep every other sample and sample half as often from now on.
				kept := s.lags[:0]
				for i := 0; i < len(s.lags); i += 2 {
					kept = append(kept, s.lags[i])
				}
				s.lags = kept
				s.lagStride *= 2
			}
		}
	}
}

// BatchDone counts one ingested batch of `lines` lines. The largest batch bounds what an
// at-least-once agent may repeat after a crash between the sink's answer and its checkpoint.
func (s *Stats) BatchDone(lines int) {
	s.mu.Lock()
	s.batches++
	s.maxBatch = max(s.maxBatch, lines)
	s.mu.Unlock()
}

// Mark begins a new window: from now on the counts, the lag samples and the batches are
// those since the mark. A trial on a deployment that earlier trials used counts its own
// lines only: each instance keeps its sequence, and what is missing in the window are the
// gaps above the highest number it had seen at the mark (a gap from before is not counted
// again, and a late line that fills one changes nothing in the window).
func (s *Stats) Mark() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, insts := range s.pods {
		for _, inst := range insts {
			inst.base = Counts{Received: inst.received, Unique: uint64(len(inst.seen)), Duplicated: inst.dups}
			inst.floor, inst.above = inst.maxSeq, 0
		}
	}
	s.lags, s.lagStride, s.lagCount = nil, 1, 0
	s.unparsed, s.foreign, s.batches, s.maxBatch = 0, 0, 0, 0
}

// since are an instance's counts in the current window.
func (inst *instance) since() Counts {
	// above <= maxSeq - floor <= MaxSeq and the bases only grow: nothing here can wrap.
	return Counts{
		Received: inst.received - inst.base.Received, Unique: uint64(len(inst.seen)) - inst.base.Unique,
		Missing: (inst.maxSeq - inst.floor) - inst.above, Duplicated: inst.dups - inst.base.Duplicated, Instances: 1,
	}
}

// Counts are the totals for one pod or for all.
type Counts struct {
	Received   uint64 `json:"received"`
	Unique     uint64 `json:"unique"`
	Missing    uint64 `json:"missing"`
	Duplicated uint64 `json:"duplicated"`
	Instances  int    `json:"instances"`
}

// Lag is the delivery delay, from the line's timestamp to its arrival.
type Lag struct {
	MinS    float64 `json:"min_s"`
	MedianS float64 `json:"median_s"`
	MaxS    float64 `json:"max_s"`
	Samples int     `json:"samples"`
}

// Snapshot is what GET /stats answers.
type Snapshot struct {
	Total    Counts            `json:"total"`
	Sources  map[string]Counts `json:"sources"`
	Lag      Lag               `json:"lag"`
	Unparsed uint64            `json:"unparsed"`
	Foreign  uint64            `json:"foreign"`
	Batches  uint64            `json:"batches"`
	MaxBatch int               `json:"max_batch_lines"`
}

// Snapshot computes the counts since the last Mark (or the start). Missing lines are the gaps
// below each instance's highest sequence number (lines after the last one that arrived
// cannot be known as missing).
func (s *Stats) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := Snapshot{Sources: map[string]Counts{}, Unparsed: s.unparsed, Foreign: s.foreign, Batches: s.batches, MaxBatch: s.maxBatch}
	for pod, insts := range s.pods {
		var c Counts
		for _, inst := range insts {
			w := inst.since()
			c.Received += w.Received
			c.Unique += w.Unique
			c.Missing += w.Missing
			c.Duplicated += w.Duplicated
			c.Instances++
		}
		snap.Sources[pod] = c
		snap.Total.Received += c.Received
		snap.Total.Unique += c.Unique
		snap.Total.Missing += c.Missing
		snap.Total.Duplicated += c.Duplicated
		snap.Total.Instances += c.Instances
	}
	if len(s.lags) > 0 {
		sorted := append([]float64(nil), s.lags...)
		sort.Float64s(sorted)
		snap.Lag = Lag{MinS: sorted[0], MedianS: sorted[len(sorted)/2], MaxS: sorted[len(sorted)-1], Samples: len(sorted)}
	}
	return snap
}
