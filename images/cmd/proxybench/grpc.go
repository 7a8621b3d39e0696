package main

// The gRPC hop (issue 24): unary Calls of the app's Chain service (internal/chainrpc) over
// one HTTP/2 channel, open loop at a fixed rate, client -> app directly against client ->
// proxy -> app, each proxy carrying HTTP/2 cleartext to the app: meshproxy's sidecar
// outbound (routed by :authority, found by the HTTP/2 preface on its one port), HAProxy
// (`proto h2` on both sides) and nginx (`http2` listener, grpc_pass over a keep-alive
// upstream). One channel, as a gRPC client keeps one connection per backend: every call is
// a stream of it.

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"patternbench.local/images/internal/chainrpc"
)

// grpcTarget is where a target takes gRPC, and the :authority it routes by.
type grpcTarget struct {
	addr, authority string
}

// grpcOpenLoop sends `rate` Calls/s for d on a smooth schedule, each in its own goroutine,
// latency from its due time.
func grpcOpenLoop(t grpcTarget, rate int, d time.Duration) (openResult, error) {
	conn, err := grpc.NewClient("passthrough:///"+t.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(t.authority), grpc.WithDefaultCallOptions(grpc.CallContentSubtype(chainrpc.Subtype)))
	if err != nil {
		return openResult{}, err
	}
	defer conn.Close()
	call := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		answer := map[string]any{}
		return conn.Invoke(ctx, chainrpc.CallMethod, &chainrpc.CallRequest{RequestID: "bench"}, &answer)
	}
	if err := call(); err != nil { // connected, and the path works
		return openResult{}, fmt.Errorf("a first call: %w", err)
	}
	interval := time.Second / time.Duration(rate)
	n := int(d / interval)
	res := openResult{latencies: make([]float64, 0, n)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	_ = setTimerSlack(1000)
	start := time.Now()
	for i := 0; i < n; i++ {
		due := start.Add(time.Duration(i) * interval)
		sleepUntil(due)
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := call()
			ms := float64(time.Since(due).Nanoseconds()) / 1e6
			mu.Lock()
			if err != nil {
				res.failed++
			} else {
				res.latencies = append(res.latencies, ms)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res, nil
}

// haproxyGRPC: a listener carrying HTTP/2 cleartext to the app's HTTP/2 port, Via added.
func haproxyGRPC(port, appPort int) string {
	return fmt.Sprintf(`listen grpc
    bind 127.0.0.1:%d proto h2
    http-request add-header Via "2 haproxy"
    http-response add-header Via "2 haproxy"
    server app 127.0.0.1:%d proto h2 maxconn 1024
`, port, appPort)
}

// nginxGRPC: an HTTP/2 cleartext server passing gRPC to a keep-alive upstream, Via added.
func nginxGRPC(port, appPort int) string {
	return fmt.Sprintf(`    upstream app_grpc {
        server 127.0.0.1:%[2]d;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%[1]d http2;
        location / {
            grpc_pass grpc://app_grpc;
            grpc_set_header Via "2 nginx";
            add_header Via "2 nginx";
        }
    }
`, port, appPort)
}

// grpcRound measures every target's gRPC hop once: latency at s.grpcRate, the proxy's CPU
// per 1000 calls, and the latency each proxy adds over direct.
func grpcRound(s settings, order []target, round int, m samples, failed *int64) error {
	lat := map[string][2]float64{}
	for _, t := range order {
		before := cpuNs(t.pids)
		r, err := grpcOpenLoop(t.grpc, s.grpcRate, s.phase)
		if err != nil {
			return fmt.Errorf("%s carrying gRPC: %w", t.name, err)
		}
		cpuMs := float64(cpuNs(t.pids)-before) / 1e6
		p50, p99 := percentile(r.latencies, 0.5), percentile(r.latencies, 0.99)
		lat[t.name] = [2]float64{p50, p99}
		*failed += r.failed
		k := fmt.Sprintf("%s_grpc_%%s_at_%s", t.name, rateKey(s.grpcRate))
		m.add(fmt.Sprintf(k, "p50_ms"), p50)
		m.add(fmt.Sprintf(k, "p99_ms"), p99)
		if t.pids != nil {
			m.add(fmt.Sprintf(k, "cpu_ms_per_1k"), cpuMs/float64(max(len(r.latencies), 1))*1000)
		}
		fmt.Fprintf(os.Stderr, "round %d/%d %5d calls/s %-9s gRPC p50 %.3f ms p99 %.3f ms failed %d\n", round+1, s.rounds, s.grpcRate, t.name, p50, p99, r.failed)
	}
	for _, t := range order {
		if t.pids != nil {
			k := fmt.Sprintf("%s_grpc_added_%%s_ms_at_%s", t.name, rateKey(s.grpcRate))
			m.add(fmt.Sprintf(k, "p50"), lat[t.name][0]-lat["direct"][0])
			m.add(fmt.Sprintf(k, "p99"), lat[t.name][1]-lat["direct"][1])
		}
	}
	return nil
}

// nginxWithGRPC is nginxConfig with the gRPC server inside its http block.
func nginxWithGRPC(dir string, port, grpcPort, appPort int) string {
	return strings.TrimSuffix(nginxConfig(dir, port, appPort), "}\n") + nginxGRPC(grpcPort, appPort) + "}\n"
}
