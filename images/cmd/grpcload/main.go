// grpcload is the long-lived load (issue 24): gRPC clients that keep their channels open for
// the whole case, sending unary Calls at a fixed rate over a few channels (grpc-unary) or
// holding Watch streams open (grpc-stream), and recording every RPC, every stream message,
// every stream's end and every connection's life as JSON lines beside the HTTP probes.
//
// Go and grpc-go rather than Python: what is measured is what a gRPC client does across an
// upgrade (GOAWAY, transparent retries, reconnect backoff), and grpcio shows none of it.
//
//	grpcload CONFIG.json
//
// CONFIG is the harness's load config (load/runner.py) with its gRPC fields.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"patternbench.local/images/internal/chainrpc"
	"patternbench.local/images/internal/h2watch"
)

var version = "dev"

// Config is what grpcload reads of the load config.
type Config struct {
	Host            string   `json:"host"`
	Records         string   `json:"records"`
	Summary         string   `json:"grpc_summary"`
	StopFile        string   `json:"stop_file"`
	DurationS       float64  `json:"duration_s"`
	Workload        string   `json:"workload"`
	RPS             *float64 `json:"rps"`
	Users           int      `json:"users"`
	RatePerUser     float64  `json:"rate_per_user"`
	Channels        int      `json:"grpc_channels"`
	Streams         int      `json:"grpc_streams"`
	StreamRate      float64  `json:"stream_rate"`
	RequestTimeoutS float64  `json:"request_timeout_s"`
	ProgressS       float64  `json:"progress_interval_s"`
}

// The unary rate: --rps if set, else what the users would send.
func (c Config) unaryRate() float64 {
	if c.RPS != nil {
		return *c.RPS
	}
	return float64(c.Users) * c.RatePerUser
}

// records appends JSON lines, one write per line (O_APPEND: the probes' process writes to the same file).
type records struct {
	mu sync.Mutex
	f  *os.File
}

func (r *records) write(rec map[string]any) {
	b, err := json.Marshal(rec)
	if err != nil {
		return
	}
	r.mu.Lock()
	_, _ = r.f.Write(append(b, '\n'))
	r.mu.Unlock()
}

type load struct {
	cfg      Config
	out      *records
	watch    *h2watch.Watcher
	channels []*grpc.ClientConn
	started  time.Time

	rpcs, failed, messages, streamsOpened, streamEnds atomic.Int64
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grpcload CONFIG.json")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "grpcload: %v\n", err)
		os.Exit(1)
	}
}

func run(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	cfg.Channels, cfg.Streams = max(cfg.Channels, 1), max(cfg.Streams, 1)
	if cfg.RequestTimeoutS <= 0 {
		cfg.RequestTimeoutS = 5
	}
	if cfg.ProgressS <= 0 {
		cfg.ProgressS = 5
	}
	u, err := url.Parse(cfg.Host)
	if err != nil || u.Host == "" {
		return fmt.Errorf("host %q is not a URL", cfg.Host)
	}
	f, err := os.OpenFile(cfg.Records, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	l := &load{cfg: cfg, out: &records{f: f}, started: time.Now()}
	l.watch = &h2watch.Watcher{Prefix: "load", OnEnd: func(r h2watch.Record) {
		rec := map[string]any{"kind": "conn", "t": r.EndedT} // every record has its `t` on the case's timeline
		b, _ := json.Marshal(r)
		_ = json.Unmarshal(b, &rec)
		l.out.write(rec)
	}}
	for i := range cfg.Channels {
		c, err := grpc.NewClient("passthrough:///"+u.Host,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.CallContentSubtype(chainrpc.Subtype)),
			grpc.WithContextDialer(l.watch.Dial(fmt.Sprintf("ch%d", i), nil)))
		if err != nil {
			return err
		}
		l.channels = append(l.channels, c)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	switch cfg.Workload {
	case "grpc-unary":
		wg.Add(1)
		go func() { defer wg.Done(); l.unary(ctx) }()
	case "grpc-stream":
		for k := range cfg.Streams {
			wg.Add(1)
			go func() { defer wg.Done(); l.stream(ctx, k) }()
		}
	default:
		return fmt.Errorf("unknown workload %q (grpc-unary or grpc-stream)", cfg.Workload)
	}
	go l.progress(ctx)
	deadline := l.started.Add(time.Duration(cfg.DurationS * float64(time.Second)))
	for time.Now().Before(deadline) {
		if _, err := os.Stat(cfg.StopFile); cfg.StopFile != "" && err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	wg.Wait()
	l.watch.Close() // first: what the channels' closing does to their connections is not a replacement
	for _, c := range l.channels {
		_ = c.Close()
	}
	return l.writeSummary()
}

// unary sends Calls on schedule (open loop: a slow answer does not delay the next call),
// round robin over the channels.
func (l *load) unary(ctx context.Context) {
	rate := l.cfg.unaryRate()
	if rate <= 0 {
		return
	}
	interval := time.Duration(float64(time.Second) / rate)
	var inflight sync.WaitGroup
	next := time.Now()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			inflight.Wait()
			return
		case <-time.After(time.Until(next)):
		}
		next = next.Add(interval)
		inflight.Add(1)
		go func(ch *grpc.ClientConn) {
			defer inflight.Done()
			l.call(ch)
		}(l.channels[n%len(l.channels)])
	}
}

func (l *load) call(ch *grpc.ClientConn) {
	id := requestID()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(l.cfg.RequestTimeoutS*float64(time.Second)))
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "x-request-id", id)
	var header metadata.MD
	var p peer.Peer
	answer := map[string]any{}
	t, wall := h2watch.Now(), time.Now()
	err := ch.Invoke(ctx, chainrpc.CallMethod, &chainrpc.CallRequest{RequestID: id}, &answer, grpc.Header(&header), grpc.Peer(&p))
	rec := map[string]any{
		"kind": "user", "proto": "grpc", "t": t, "wall": float64(wall.UnixNano()) / 1e9,
		"ms": float64(time.Since(wall).Microseconds()) / 1000, "request_id": id,
		"via": strings.Join(header.Get("via"), ", "), "conn": connID(&p),
	}
	l.rpcs.Add(1)
	if err != nil {
		l.failed.Add(1)
		st := status.Convert(err)
		rec["status"], rec["error"], rec["grpc_code"], rec["detail"] = 0, "grpc:"+st.Code().String(), st.Code().String(), truncate(st.Message(), 200)
	} else {
		rec["status"], rec["error"], rec["grpc_code"] = 200, "", "OK"
		for k, v := range trail(answer) {
			rec[k] = v
		}
	}
	l.out.write(rec)
}

// stream holds one Watch open, and opens another as soon as one ends, until the load stops.
func (l *load) stream(ctx context.Context, k int) {
	ch := l.channels[k%len(l.channels)]
	intervalMS := int(1000 / max(l.cfg.StreamRate, 0.1))
	id := fmt.Sprintf("s%d", k)
	lastMsg := 0.0
	for attempt := 0; ctx.Err() == nil; attempt++ {
		opened := h2watch.Now()
		reqID := requestID()
		sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "x-request-id", reqID))
		s, err := ch.NewStream(sctx, chainrpc.WatchDesc, chainrpc.WatchMethod)
		if err == nil {
			err = s.SendMsg(&chainrpc.CallRequest{RequestID: reqID, IntervalMS: intervalMS})
		}
		if err == nil {
			err = s.CloseSend()
		}
		l.streamsOpened.Add(1)
		conn := ""
		messages := 0
		for err == nil {
			answer := map[string]any{}
			if err = s.RecvMsg(&answer); err != nil {
				break
			}
			if conn == "" {
				if p, ok := peer.FromContext(s.Context()); ok {
					conn = connID(p)
				}
			}
			now := h2watch.Now()
			rec := map[string]any{"kind": "msg", "stream": id, "attempt": attempt, "seq": messages, "t": now, "conn": conn}
			if lastMsg > 0 {
				rec["gap_ms"] = (now - lastMsg) * 1000
			}
			if messages == 0 { // the stream's path (a request's, for the hop figures) and its channels' ended connections
				for k, v := range trail(answer) {
					rec[k] = v
				}
				rec["status"], rec["error"] = 200, ""
				if md, err := s.Header(); err == nil {
					rec["via"] = strings.Join(md.Get("via"), ", ")
				}
			}
			lastMsg = now
			messages++
			l.messages.Add(1)
			l.out.write(rec)
		}
		cancel()
		end, detail := "client_stop", ""
		if ctx.Err() == nil {
			if errors.Is(err, io.EOF) {
				err = status.Error(codes.Unavailable, "the stream ended")
			}
			st := status.Convert(err)
			end, detail = st.Code().String(), truncate(st.Message(), 200)
		}
		l.streamEnds.Add(1)
		ended := h2watch.Now()
		l.out.write(map[string]any{"kind": "stream", "stream": id, "attempt": attempt, "t": ended, "opened_t": opened, "ended_t": ended,
			"end": end, "detail": detail, "messages": messages, "conn": conn})
		if messages == 0 && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond) // not a hot loop while nothing answers
		}
	}
}

func (l *load) progress(ctx context.Context) {
	t := time.NewTicker(time.Duration(l.cfg.ProgressS * float64(time.Second)))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		elapsed := time.Since(l.started).Seconds()
		done := l.rpcs.Load() + l.messages.Load()
		line, _ := json.Marshal(map[string]any{"progress": map[string]any{
			"elapsed_s": float64(int(elapsed*10)) / 10, "worker": "grpc", "requests": done,
			"failures": l.failed.Load() + l.streamEnds.Load(), "rps": float64(int(float64(done)/elapsed*10)) / 10,
		}})
		fmt.Println(string(line))
	}
}

func (l *load) writeSummary() error {
	elapsed := time.Since(l.started).Seconds()
	summary := map[string]any{
		"mode": l.cfg.Workload, "rpcs": l.rpcs.Load(), "rpcs_failed": l.failed.Load(), "streams_opened": l.streamsOpened.Load(),
		"messages": l.messages.Load(), "channels": l.cfg.Channels, "duration_s": elapsed, "version": version,
	}
	b, err := json.Marshal(summary)
	if err != nil {
		return err
	}
	if l.cfg.Summary != "" {
		if err := os.WriteFile(l.cfg.Summary, b, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("{\"done\": %s}\n", b)
	return nil
}

func connID(p *peer.Peer) string {
	if p == nil {
		return ""
	}
	if a, ok := p.Addr.(h2watch.Addr); ok {
		return a.ID
	}
	return ""
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
