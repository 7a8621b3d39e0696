package logs

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseCRI(t *testing.T) {
	l, err := ParseCRI([]byte("2024-05-01T10:00:00.123456789Z stdout P hello wor"))
	if err != nil || !l.Partial || string(l.Content) != "hello wor" || string(l.Stream) != "stdout" {
		t.Fatalf("partial: %+v %v", l, err)
	}
	l, err = ParseCRI([]byte("2024-05-01T10:00:00Z stderr F "))
	if err != nil || l.Partial || len(l.Content) != 0 {
		t.Fatalf("empty full line: %+v %v", l, err)
	}
	if _, err := ParseCRI([]byte("garbage")); err == nil {
		t.Fatal("garbage parsed")
	}
}

func appendFile(t *testing.T, path, text string) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}

func data(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, string(r.Data))
	}
	return out
}

func TestCRIPartialLinesAreJoinedAndNeverSplitAcrossPolls(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	appendFile(t, path, "T stdout F one\nT stdout P tw")
	tl := NewTailer([]string{filepath.Join(dir, "*.log")}, CRI, nil)
	got := data(mustPoll(t, tl, 10))
	if strings.Join(got, "|") != "one" {
		t.Fatalf("first poll: %q", got)
	}
	appendFile(t, path, "o-a\nT stdout P two-b\nT stdout F two-c\n")
	got = data(mustPoll(t, tl, 10))
	if strings.Join(got, "|") != "two-atwo-btwo-c" {
		t.Fatalf("joined partials: %q", got)
	}
	pos := tl.Positions()[path]
	info, _ := os.Stat(path)
	if pos.Offset != info.Size() {
		t.Fatalf("offset %d, file size %d", pos.Offset, info.Size())
	}
}

func mustPoll(t *testing.T, tl *Tailer, max int) []Record {
	t.Helper()
	recs, err := tl.Poll(max)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func TestRotationLosesAndRepeatsNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	for i := 1; i <= 3; i++ {
		appendFile(t, path, fmt.Sprintf("T stdout F line-%d\n", i))
	}
	tl := NewTailer([]string{filepath.Join(dir, "*.log")}, CRI, nil)
	got := data(mustPoll(t, tl, 2)) // read only part of the file before it rotates
	appendFile(t, path, "T stdout F line-4\n")
	// The kubelet's rotation: rename, then the runtime reopens a new file at the same path.
	if err := os.Rename(path, path+".20240501-100000"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "T stdout F line-5\n")
	for i := 0; i < 5; i++ {
		got = append(got, data(mustPoll(t, tl, 2))...)
	}
	want := "line-1|line-2|line-3|line-4|line-5"
	if strings.Join(got, "|") != want {
		t.Fatalf("through rotation: %q, want %q", strings.Join(got, "|"), want)
	}
}

func TestCheckpointResumeAcrossRotationWhileNoAgentRan(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0.log")
	appendFile(t, path, "T stdout F a\nT stdout F b\n")
	cp := filepath.Join(dir, "cp.json")
	tl := NewTailer([]string{filepath.Join(dir, "*.log")}, CRI, nil)
	got := data(mustPoll(t, tl, 1))
	if err := SaveCheckpoint(cp, tl.Positions()); err != nil {
		t.Fatal(err)
	}
	tl.Close() // the agent is gone; the file rotates before its successor starts
	os.Rename(path, path+".20240501-100000")
	appendFile(t, path, "T stdout F c\n")
	start, err := LoadCheckpoint(cp)
	if err != nil {
		t.Fatal(err)
	}
	tl2 := NewTailer([]string{filepath.Join(dir, "*.log")}, CRI, start)
	for i := 0; i < 3; i++ {
		got = append(got, data(mustPoll(t, tl2, 10))...)
	}
	if strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("resume: %q", got)
	}
}

// sink records every line it is sent.
type sink struct {
	mu    sync.Mutex
	lines []string
	fail  bool
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	sc := bufio.NewScanner(r.Body)
	for sc.Scan() {
		s.lines = append(s.lines, sc.Text())
	}
	w.WriteHeader(http.StatusNoContent)
}

func TestAgentKilledBetweenBatchesResumesWithNoLossNoDuplicate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	for i := 1; i <= 25; i++ {
		appendFile(t, path, fmt.Sprintf("%d\n", i))
	}
	s := &sink{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	cp := filepath.Join(dir, "cp.json")
	newAgent := func() *Agent {
		start, err := LoadCheckpoint(cp)
		if err != nil {
			t.Fatal(err)
		}
		return &Agent{Tailer: NewTailer([]string{path}, Raw, start), Shipper: &Shipper{URL: srv.URL, Client: srv.Client()}, Checkpoint: cp, Batch: 10, Poll: time.Millisecond, Logf: t.Logf}
	}
	a := newAgent()
	for i := 0; i < 2; i++ { // two batches shipped and checkpointed ...
		if _, err := a.Step(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	// ... a third batch is read but the sink is down: the agent dies holding it.
	s.mu.Lock()
	s.fail = true
	s.mu.Unlock()
	if _, err := a.Step(context.Background()); err == nil {
		t.Fatal("shipping to a failing sink succeeded")
	}
	a.Tailer.Close() // killed: nothing flushed
	s.mu.Lock()
	s.fail = false
	s.mu.Unlock()
	appendFile(t, path, "26\n")
	b := newAgent()
	stop := make(chan struct{})
	close(stop)
	if err := b.Run(context.Background(), stop, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := map[string]int{}
	for _, l := range s.lines {
		seen[l]++
	}
	for i := 1; i <= 26; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Errorf("line %d arrived %d times", i, seen[fmt.Sprint(i)])
		}
	}
	if len(s.lines) != 26 {
		t.Errorf("%d lines arrived, want 26", len(s.lines))
	}
}

func TestAgentFlushesOnStopAfterDrain(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	s := &sink{}
	srv := httptest.NewServer(s)
	defer srv.Close()
	a := &Agent{Tailer: NewTailer([]string{path}, Raw, nil), Shipper: &Shipper{URL: srv.URL, Client: srv.Client()}, Batch: 100, Poll: 5 * time.Millisecond, Logf: t.Logf}
	stop := make(chan struct{})
	done := make(chan error)
	go func() { done <- a.Run(context.Background(), stop, 200*time.Millisecond, 2*time.Second) }()
	close(stop)
	time.Sleep(50 * time.Millisecond)
	appendFile(t, path, "written during the drain\n") // the app is still draining
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) != 1 || s.lines[0] != "written during the drain" {
		t.Fatalf("sink got %q", s.lines)
	}
}
