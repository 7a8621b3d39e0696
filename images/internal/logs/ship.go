package logs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Shipper posts batches of records to the log sink, one record per line.
type Shipper struct {
	URL    string
	Client *http.Client
}

// Ship sends one batch; any non-2xx answer is an error, so the batch is retried.
func (s *Shipper) Ship(ctx context.Context, recs []Record) error {
	var body bytes.Buffer
	for _, r := range recs {
		body.Write(r.Data)
		body.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("sink answered HTTP %d", resp.StatusCode)
	}
	return nil
}

// Agent tails, ships and checkpoints. A batch is checkpointed only after the sink took it,
// and a new batch is read only after the last one was shipped, so the checkpoint always
// equals what the sink has: a successor resumes with nothing lost and nothing repeated.
type Agent struct {
	Tailer     *Tailer
	Shipper    *Shipper
	Checkpoint string // "" for none
	Batch      int
	Poll       time.Duration
	Logf       func(string, ...any)

	pending []Record
	Shipped uint64
}

// Step does one unit of work; it reports whether there may be more to do right away.
func (a *Agent) Step(ctx context.Context) (busy bool, err error) {
	if len(a.pending) == 0 {
		recs, err := a.Tailer.Poll(a.Batch)
		if err != nil {
			return false, err
		}
		a.pending = recs
	}
	if len(a.pending) == 0 {
		return false, nil
	}
	if err := a.Shipper.Ship(ctx, a.pending); err != nil {
		return false, err
	}
	a.Shipped += uint64(len(a.pending))
	full := len(a.pending) >= a.Batch
	a.pending = nil
	if a.Checkpoint != "" {
		if err := SaveCheckpoint(a.Checkpoint, a.Tailer.Positions()); err != nil {
			return false, fmt.Errorf("checkpoint: %w", err)
		}
	}
	return full, nil
}

// Run works until stop is closed, then keeps going for drain (the app may still write),
// then ships everything left within grace.
func (a *Agent) Run(ctx context.Context, stop <-chan struct{}, drain, grace time.Duration) error {
	backoff := 50 * time.Millisecond
	var stopAt time.Time
	for {
		busy, err := a.Step(ctx)
		if err != nil {
			a.Logf("logagent: %v (retrying in %s)", err, backoff)
		}
		if stopAt.IsZero() {
			select {
			case <-stop:
				stopAt = time.Now()
			default:
			}
		}
		if !stopAt.IsZero() && time.Since(stopAt) >= drain {
			return a.flush(ctx, grace)
		}
		wait := a.Poll
		if err != nil {
			wait = backoff
			backoff = min(backoff*2, 2*time.Second)
		} else {
			backoff = 50 * time.Millisecond
			if busy {
				continue
			}
		}
		select {
		case <-stop:
			if stopAt.IsZero() {
				stopAt = time.Now()
			}
		case <-time.After(wait):
		}
	}
}

func (a *Agent) flush(ctx context.Context, grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		busy, err := a.Step(ctx)
		if err != nil {
			a.Logf("logagent: flushing: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if !busy && len(a.pending) == 0 {
			return nil
		}
	}
	return fmt.Errorf("could not ship everything within %s", grace)
}
