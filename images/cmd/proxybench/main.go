// Command proxybench measures what the mesh proxy adds, side by side in one run on
// 127.0.0.1: client -> app directly, against client -> proxy -> proxy -> app (the sidecar
// chain), at a fixed request rate and at saturation, plus the proxy's resident memory.
// It starts the real app and meshproxy binaries as processes; the proxies learn the app's
// address from a minimal EndpointSlice list served here. Output: one JSON object.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func freePort() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func start(bin string, env ...string) *exec.Cmd {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "proxybench: starting %s: %v\n", bin, err)
		os.Exit(2)
	}
	return cmd
}

func waitOK(url string) {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	fmt.Fprintf(os.Stderr, "proxybench: %s never answered\n", url)
	os.Exit(2)
}

func rssMiB(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseFloat(strings.Fields(line)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

type result struct {
	latencies []float64 // ms
	failed    int64
	elapsed   time.Duration
}

func (r result) pct(p float64) float64 {
	if len(r.latencies) == 0 {
		return 0
	}
	s := append([]float64(nil), r.latencies...)
	sort.Float64s(s)
	return s[int(p*float64(len(s)-1))]
}

// fixedRate sends rate requests/s for d, each on schedule whatever the answers' speed.
func fixedRate(client *http.Client, target string, rate int, d time.Duration) result {
	var mu sync.Mutex
	var res result
	var wg sync.WaitGroup
	interval := time.Second / time.Duration(rate)
	start := time.Now()
	for next := start; time.Since(start) < d; next = next.Add(interval) {
		time.Sleep(time.Until(next))
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			resp, err := client.Get(target)
			ms := float64(time.Since(t).Microseconds()) / 1000
			ok := err == nil && resp.StatusCode == 200
			if resp != nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			mu.Lock()
			if ok {
				res.latencies = append(res.latencies, ms)
			} else {
				res.failed++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(start)
	return res
}

// saturate runs `workers` closed loops for d and counts completed requests.
func saturate(client *http.Client, target string, workers int, d time.Duration) float64 {
	var done atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Get(target)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == 200 {
						done.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / d.Seconds()
}

func main() {
	bin := flag.String("bin", ".", "directory with the app and meshproxy binaries")
	rate := flag.Int("rate", 500, "fixed request rate")
	seconds := flag.Float64("seconds", 5, "duration of each fixed-rate phase")
	satSeconds := flag.Float64("saturate-seconds", 3, "duration of each saturation phase")
	workers := flag.Int("workers", 32, "closed-loop workers at saturation")
	rounds := flag.Int("rounds", 2, "direct/proxied pairs, interleaved")
	flag.Parse()

	appPort, inPort, outPort := freePort(), freePort(), freePort()
	api := http.NewServeMux()
	api.HandleFunc("/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "" {
			<-r.Context().Done() // nothing changes: an idle watch
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"metadata": map[string]any{"resourceVersion": "1"},
			"items": []any{map[string]any{
				"metadata":    map[string]any{"name": "app-1", "namespace": "bench", "labels": map[string]string{"kubernetes.io/service-name": "app"}},
				"addressType": "IPv4",
				"endpoints":   []any{map[string]any{"addresses": []string{"127.0.0.1"}, "conditions": map[string]any{"ready": true}}},
				"ports":       []any{map[string]any{"port": inPort, "protocol": "TCP"}},
			}},
		})
	})
	apiLn, _ := net.Listen("tcp", "127.0.0.1:0")
	go http.Serve(apiLn, api)
	apiURL := "http://" + apiLn.Addr().String()

	app := start(*bin+"/app", "SERVICE_NAME=app", fmt.Sprintf("LISTEN=127.0.0.1:%d", appPort), "LOG_PATH=/dev/null", "DRAIN=0s")
	common := []string{"MODE=sidecar", "NAMESPACE=bench", "API_SERVER=" + apiURL, "LISTEN_HOST=127.0.0.1"}
	proxyB := start(*bin+"/meshproxy", append(common, "POD_NAME=b", fmt.Sprintf("INBOUND_PORT=%d", inPort),
		fmt.Sprintf("OUTBOUND=127.0.0.1:%d", freePort()), fmt.Sprintf("ADMIN=127.0.0.1:%d", freePort()), fmt.Sprintf("APP=127.0.0.1:%d", appPort))...)
	proxyA := start(*bin+"/meshproxy", append(common, "POD_NAME=a", fmt.Sprintf("INBOUND_PORT=%d", freePort()),
		fmt.Sprintf("OUTBOUND=127.0.0.1:%d", outPort), fmt.Sprintf("ADMIN=127.0.0.1:%d", freePort()))...)
	defer func() {
		for _, c := range []*exec.Cmd{app, proxyA, proxyB} {
			c.Process.Kill()
			c.Wait()
		}
	}()
	direct := fmt.Sprintf("http://127.0.0.1:%d/", appPort)
	waitOK(direct)
	newClient := func(proxied bool) *http.Client {
		t := &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 0}
		if proxied {
			t.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", outPort)})
		}
		return &http.Client{Transport: t, Timeout: 5 * time.Second}
	}
	directClient, proxiedClient := newClient(false), newClient(true)
	waitOK2 := func() {
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if resp, err := proxiedClient.Get("http://app.bench/"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		fmt.Fprintln(os.Stderr, "proxybench: the proxied path never answered")
		os.Exit(2)
	}
	waitOK2()

	phase := time.Duration(*seconds * float64(time.Second))
	var d, p result
	var maxRSS float64
	for i := 0; i < *rounds; i++ {
		r := fixedRate(directClient, direct, *rate, phase)
		d.latencies, d.failed = append(d.latencies, r.latencies...), d.failed+r.failed
		done := make(chan struct{})
		go func() { // sample the proxy's memory while it carries the load
			for {
				select {
				case <-done:
					return
				case <-time.After(200 * time.Millisecond):
					if rss := rssMiB(proxyA.Process.Pid); rss > maxRSS {
						maxRSS = rss
					}
				}
			}
		}()
		r = fixedRate(proxiedClient, "http://app.bench/", *rate, phase)
		close(done)
		p.latencies, p.failed = append(p.latencies, r.latencies...), p.failed+r.failed
	}
	sat := time.Duration(*satSeconds * float64(time.Second))
	var directRPS, proxiedRPS float64
	for i := 0; i < *rounds; i++ {
		directRPS += saturate(directClient, direct, *workers, sat)
		proxiedRPS += saturate(proxiedClient, "http://app.bench/", *workers, sat)
	}
	const hops = 2.0
	out := map[string]any{
		"proxy_rate_rps":             *rate,
		"proxy_direct_p50_ms":        d.pct(0.5),
		"proxy_direct_p99_ms":        d.pct(0.99),
		"proxy_chain_p50_ms":         p.pct(0.5),
		"proxy_chain_p99_ms":         p.pct(0.99),
		"proxy_added_p50_ms":         (p.pct(0.5) - d.pct(0.5)) / hops,
		"proxy_added_p99_ms":         (p.pct(0.99) - d.pct(0.99)) / hops,
		"proxy_direct_max_rps":       directRPS / float64(*rounds),
		"proxy_chain_max_rps":        proxiedRPS / float64(*rounds),
		"proxy_throughput_ratio":     proxiedRPS / directRPS,
		"proxy_rss_mib":              maxRSS,
		"proxy_failed_requests":      d.failed + p.failed,
		"proxy_requests_per_phase_n": len(d.latencies) / *rounds,
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}
