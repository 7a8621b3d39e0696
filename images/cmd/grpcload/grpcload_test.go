package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"patternbench.local/images/internal/chainrpc"
)

// The trail of a gRPC answer is the one Python's answer_trail makes of the same answer
// (tests/unit/test_load_records.py reads the same fixture).
func TestTrailMatchesTheSharedFixture(t *testing.T) {
	raw, err := os.ReadFile("testdata/trail.json")
	if err != nil {
		t.Fatal(err)
	}
	var fixture struct {
		Answer map[string]any `json:"answer"`
		Trail  map[string]any `json:"trail"`
	}
	if err := json.Unmarshal(raw, &fixture); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(trail(fixture.Answer))
	var back map[string]any
	_ = json.Unmarshal(got, &back)
	if !reflect.DeepEqual(back, fixture.Trail) {
		t.Fatalf("trail\n got %s\nwant %v", got, fixture.Trail)
	}
}

// answer is a one-hop stand-in for the app's answer.
func answer(id string) map[string]any {
	return map[string]any{"service": "entry", "pod": "entry-a", "node": "n1", "request_id": id}
}

// serveChain serves a one-hop stand-in for the app's Chain service.
func serveChain(t *testing.T, ln net.Listener) *grpc.Server {
	srv := grpc.NewServer()
	call := func(ctx context.Context, req *chainrpc.CallRequest) (any, error) {
		_ = grpc.SetHeader(ctx, metadata.Pairs("via", "2 sidecar/mesh (n1)"))
		return answer(req.RequestID), nil
	}
	watch := func(req *chainrpc.CallRequest, s grpc.ServerStream) error {
		for {
			if err := s.SendMsg(answer(req.RequestID)); err != nil {
				return err
			}
			select {
			case <-s.Context().Done():
				return nil
			case <-time.After(time.Duration(req.IntervalMS) * time.Millisecond):
			}
		}
	}
	srv.RegisterService(chainrpc.Desc(call, watch), struct{}{})
	go srv.Serve(ln)
	return srv
}

func readRecords(t *testing.T, path string) map[string][]map[string]any {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]map[string]any{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r map[string]any
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out[r["kind"].(string)] = append(out[r["kind"].(string)], r)
	}
	return out
}

func runLoad(t *testing.T, workload string, during func(stop func())) map[string][]map[string]any {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveChain(t, ln)
	defer srv.Stop()
	dir := t.TempDir()
	rps := 50.0
	cfg := Config{Host: "http://" + ln.Addr().String() + "/", Records: filepath.Join(dir, "requests.jsonl"), Summary: filepath.Join(dir, "grpc.json"),
		StopFile: filepath.Join(dir, "stop"), DurationS: 30, Workload: workload, RPS: &rps, Channels: 2, Streams: 2, StreamRate: 20}
	raw, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "config.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- run(path) }()
	during(func() { _ = os.WriteFile(cfg.StopFile, []byte("stop"), 0o644) })
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("grpcload did not stop")
	}
	return readRecords(t, cfg.Records)
}

// Unary RPCs on schedule over two channels, each a record with its trail, Via and connection;
// both connections recorded as closed by the client at the end.
func TestUnary(t *testing.T) {
	recs := runLoad(t, "grpc-unary", func(stop func()) { time.Sleep(time.Second); stop() })
	users := recs["user"]
	if len(users) < 30 {
		t.Fatalf("%d RPCs in 1 s at 50/s", len(users))
	}
	conns := map[any]bool{}
	for _, u := range users {
		if u["error"] != "" || u["status"].(float64) != 200 || u["via"] != "2 sidecar/mesh (n1)" || u["proto"] != "grpc" {
			t.Fatalf("record %v", u)
		}
		if e := u["entry"].([]any); e[0] != "entry-a" {
			t.Fatalf("entry %v", u)
		}
		conns[u["conn"]] = true
	}
	if len(conns) != 2 || len(recs["conn"]) != 2 {
		t.Fatalf("connections used %v, recorded %v", conns, recs["conn"])
	}
	for _, c := range recs["conn"] {
		if c["end"] != "stopped" || c["ready_t"] == nil {
			t.Fatalf("conn %v", c)
		}
	}
}

// Streams: messages with their gaps; a stream the server ends is a broken stream and is
// reopened; at the stop the streams end as the client's.
func TestStreamBrokenAndReopened(t *testing.T) {
	recs := runLoad(t, "grpc-stream", func(stop func()) { time.Sleep(700 * time.Millisecond); stop() })
	if len(recs["msg"]) < 10 {
		t.Fatalf("%d messages", len(recs["msg"]))
	}
	ends := recs["stream"]
	if len(ends) != 2 {
		t.Fatalf("stream ends %v", ends)
	}
	for _, e := range ends {
		if e["end"] != "client_stop" || e["messages"].(float64) < 5 {
			t.Fatalf("end %v", e)
		}
	}
}

// The server going away mid-stream: a broken stream with its status, then a new one on a new
// connection whose record says the old one ended with a GOAWAY.
func TestServerGoesAway(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := serveChain(t, ln)
	dir := t.TempDir()
	cfg := Config{Host: "http://" + addr, Records: filepath.Join(dir, "r.jsonl"), StopFile: filepath.Join(dir, "stop"), DurationS: 30,
		Workload: "grpc-stream", Channels: 1, Streams: 1, StreamRate: 20}
	raw, _ := json.Marshal(cfg)
	path := filepath.Join(dir, "c.json")
	_ = os.WriteFile(path, raw, 0o644)
	done := make(chan error, 1)
	go func() { done <- run(path) }()
	time.Sleep(400 * time.Millisecond)
	srv.Stop() // closes the connection (no graceful drain)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skip("the port was taken meanwhile")
	}
	srv2 := serveChain(t, ln2)
	defer srv2.Stop()
	time.Sleep(2500 * time.Millisecond) // gRPC's reconnect backoff starts at 1 s
	_ = os.WriteFile(cfg.StopFile, []byte("stop"), 0o644)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	recs := readRecords(t, cfg.Records)
	var broken, stopped int
	for _, e := range recs["stream"] {
		if e["end"] == "client_stop" {
			stopped++
		} else {
			broken++
		}
	}
	if broken < 1 || stopped != 1 {
		t.Fatalf("stream ends %v", recs["stream"])
	}
	var first, second map[string]any
	for _, c := range recs["conn"] {
		switch c["id"] {
		case "load#1":
			first = c
		case "load#2":
			second = c
		}
	}
	if first == nil || second == nil || first["end"] == "stopped" || first["goaway_t"] != nil || second["channel"] != first["channel"] ||
		second["ready_t"].(float64) < first["ended_t"].(float64) {
		t.Fatalf("no cut and replacement recorded: %v", recs["conn"])
	}
}
