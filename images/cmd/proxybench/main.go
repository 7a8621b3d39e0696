// Command proxybench measures one HTTP/1.1 proxy hop on 127.0.0.1, meshproxy side by side
// with HAProxy and nginx in one run: client -> app directly, against client -> proxy -> app
// through each proxy (a keep-alive upstream pool, Via added on request and response).
//
// The app and every proxy are pinned to one core (GOMAXPROCS=1, one thread, one worker),
// the load generator to another. Rounds are interleaved (each round runs every target, in a
// rotated order) and figures are medians over rounds: per target, proxy CPU per 1000
// requests at each open-loop rate and at saturation, latency added over direct at each
// rate (open loop with a smooth pacer, latency from each request's intended start), the
// closed-loop maximum rate through the hop over direct, and resident memory under load.
// Output: one flat JSON object on stdout; progress on stderr.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type target struct {
	name    string
	addr    string
	request []byte
	pids    []int      // the proxy's processes; none for direct
	grpc    grpcTarget // where it takes gRPC (grpc.go)
}

type settings struct {
	bin, meshproxy, haproxy, nginx string
	proxies                        []string
	rates                          []int
	rounds, conns                  int
	grpcRate                       int // the gRPC hop's open-loop rate; 0: not measured
	phase, maxPhase                time.Duration
	proxyCPU, loadCPU              string
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "proxybench: "+format+"\n", a...)
	os.Exit(2)
}

func parseFlags() settings {
	var s settings
	var proxies, rates string
	var seconds, maxSeconds float64
	flag.StringVar(&s.bin, "bin", ".", "directory with the app and meshproxy binaries")
	flag.StringVar(&s.meshproxy, "meshproxy", "", "meshproxy binary (default: <bin>/meshproxy)")
	flag.StringVar(&s.haproxy, "haproxy", "haproxy", "haproxy binary")
	flag.StringVar(&s.nginx, "nginx", "nginx", "nginx binary")
	flag.StringVar(&proxies, "proxies", "meshproxy,haproxy,nginx", "proxies to compare")
	flag.StringVar(&rates, "rates", "1000,5000", "open-loop rates, requests/s")
	flag.IntVar(&s.rounds, "rounds", 3, "interleaved rounds")
	flag.Float64Var(&seconds, "seconds", 10, "duration of each open-loop phase")
	flag.Float64Var(&maxSeconds, "max-seconds", 5, "duration of each closed-loop phase")
	flag.IntVar(&s.conns, "conns", 64, "closed-loop connections")
	flag.IntVar(&s.grpcRate, "grpc-rate", 1000, "open-loop rate of gRPC unary calls, calls/s (0: no gRPC hop)")
	flag.StringVar(&s.proxyCPU, "proxy-cpu", "0", "core for the app and the proxies")
	flag.StringVar(&s.loadCPU, "load-cpu", "1", "core for the load generator (this process)")
	flag.Parse()
	if s.meshproxy == "" {
		s.meshproxy = s.bin + "/meshproxy"
	}
	s.proxies = strings.Split(proxies, ",")
	for _, r := range strings.Split(rates, ",") {
		n, err := strconv.Atoi(r)
		if err != nil || n <= 0 {
			fail("-rates: %q is not a positive rate", r)
		}
		s.rates = append(s.rates, n)
	}
	if s.rounds < 1 || s.conns < 1 || seconds <= 0 || maxSeconds <= 0 {
		fail("-rounds, -conns, -seconds and -max-seconds must be positive")
	}
	s.phase = time.Duration(seconds * float64(time.Second))
	s.maxPhase = time.Duration(maxSeconds * float64(time.Second))
	return s
}

// pinSelf re-executes this process under taskset, so every thread of the generator stays
// on its core (setting affinity from Go would pin only the calling thread).
func pinSelf(cpu string) {
	if os.Getenv("PROXYBENCH_PINNED") == "1" {
		return
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		fail("taskset not found: install util-linux")
	}
	self, err := os.Executable()
	if err != nil {
		fail("%v", err)
	}
	env := append(os.Environ(), "PROXYBENCH_PINNED=1", "GOMAXPROCS=2")
	err = syscall.Exec(taskset, append([]string{"taskset", "-c", cpu, self}, os.Args[1:]...), env)
	fail("re-executing under taskset: %v", err)
}

func main() {
	s := parseFlags()
	for _, name := range s.proxies {
		switch name {
		case "meshproxy":
		case "haproxy", "nginx":
			bin := map[string]string{"haproxy": s.haproxy, "nginx": s.nginx}[name]
			if _, err := exec.LookPath(bin); err != nil {
				fail("%s not found: install it (apt-get install %s, or scripts/setup-host.sh)", bin, name)
			}
		default:
			fail("-proxies: unknown proxy %q (meshproxy, haproxy, nginx)", name)
		}
	}
	pinSelf(s.loadCPU)

	p := &procs{}
	var once sync.Once
	cleanup := func() { once.Do(p.stopAll) }
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		<-signals
		cleanup()
		fmt.Fprintln(os.Stderr, "proxybench: interrupted; every proxy stopped")
		os.Exit(130)
	}()
	dir, err := os.MkdirTemp("", "proxybench-")
	if err != nil {
		fail("%v", err)
	}
	out, err := run(s, p, dir)
	cleanup()
	os.RemoveAll(dir)
	if err != nil {
		fail("%v", err)
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

// start launches the app and the proxies and returns the targets, direct first.
func start(s settings, p *procs, dir string) ([]target, error) {
	ports := make([]int, 6) // the app, three proxies, HAProxy's and nginx's gRPC listeners
	for i := range ports {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = port
	}
	appPort := ports[0]
	plain := []byte("GET / HTTP/1.1\r\nHost: app.bench\r\n\r\n")
	one := []string{"GOMAXPROCS=1"}
	if _, err := p.start(s.proxyCPU, append(one, "SERVICE_NAME=app", "POD_NAME=app-1", fmt.Sprintf("LISTEN=127.0.0.1:%d", appPort),
		"LOG_PATH=/dev/null", "DRAIN=0s"), s.bin+"/app"); err != nil {
		return nil, err
	}
	targets := []target{{name: "direct", addr: fmt.Sprintf("127.0.0.1:%d", appPort), request: plain,
		grpc: grpcTarget{addr: fmt.Sprintf("127.0.0.1:%d", appPort), authority: "app.bench"}}} // the app's one port takes h2c too
	for i, name := range s.proxies {
		port := ports[1+i]
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		request := plain
		var argv, env []string
		grpcAt := grpcTarget{addr: addr, authority: "app.bench"} // meshproxy: its one port, routed by :authority
		switch name {
		case "meshproxy":
			api, err := endpointAPI(appPort)
			if err != nil {
				return nil, err
			}
			in, err1 := freePort()
			admin, err2 := freePort()
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			env = append(one, "MODE=sidecar", "NAMESPACE=bench", "POD_NAME=bench-a", "NODE_NAME=bench-node", "API_SERVER="+api,
				"OUTBOUND="+addr, fmt.Sprintf("INBOUND_PORT=%d", in), fmt.Sprintf("ADMIN=127.0.0.1:%d", admin),
				"LISTEN_HOST=127.0.0.1", "APP=127.0.0.1:1")
			argv = []string{s.meshproxy}
			request = []byte("GET http://app.bench/ HTTP/1.1\r\nHost: app.bench\r\n\r\n") // forward-proxy form
		case "haproxy":
			grpcAt.addr = fmt.Sprintf("127.0.0.1:%d", ports[4])
			cfg, err := writeFile(dir, "haproxy.cfg", haproxyConfig(port, appPort)+haproxyGRPC(ports[4], appPort))
			if err != nil {
				return nil, err
			}
			argv = []string{s.haproxy, "-db", "-f", cfg}
		case "nginx":
			grpcAt.addr = fmt.Sprintf("127.0.0.1:%d", ports[5])
			cfg, err := writeFile(dir, "nginx.conf", nginxWithGRPC(dir, port, ports[5], appPort))
			if err != nil {
				return nil, err
			}
			argv = []string{s.nginx, "-c", cfg, "-e", dir + "/nginx-error.log"}
		}
		cmd, err := p.start(s.proxyCPU, env, argv...)
		if err != nil {
			return nil, err
		}
		targets = append(targets, target{name: name, addr: addr, request: request, pids: []int{cmd.Process.Pid}, grpc: grpcAt})
	}
	for i := range targets {
		if err := waitHTTP(targets[i].addr, targets[i].request); err != nil {
			return nil, fmt.Errorf("%s: %w", targets[i].name, err)
		}
		if targets[i].pids != nil {
			targets[i].pids = childPids(targets[i].pids[0])
		}
	}
	return targets, nil
}

// samples collects one round's figures per target.
type samples map[string][]float64

func (m samples) add(key string, v float64) { m[key] = append(m[key], v) }

// rssWatch samples the proxies' memory while a phase runs and keeps each one's maximum.
func rssWatch(targets []target, peak map[string]float64) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, t := range targets {
				if t.pids != nil {
					v := rssMiB(t.pids)
					mu.Lock()
					if v > peak[t.name] {
						peak[t.name] = v
					}
					mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func run(s settings, p *procs, dir string) (map[string]any, error) {
	targets, err := start(s, p, dir)
	if err != nil {
		return nil, err
	}
	for _, t := range targets { // warm up: connections, pools, caches
		openLoop(t.addr, t.request, 1000, time.Second)
	}
	m := samples{}
	var failed int64
	for round := 0; round < s.rounds; round++ {
		order := make([]target, 0, len(targets)) // rotated each round
		for i := range targets {
			order = append(order, targets[(i+round)%len(targets)])
		}
		peak := map[string]float64{}
		for _, rate := range s.rates {
			direct := map[string][2]float64{}
			for _, t := range order {
				before := cpuNs(t.pids)
				stop := rssWatch([]target{t}, peak)
				r := openLoop(t.addr, t.request, rate, s.phase)
				stop()
				cpuMs := float64(cpuNs(t.pids)-before) / 1e6
				p50, p99 := percentile(r.latencies, 0.5), percentile(r.latencies, 0.99)
				direct[t.name] = [2]float64{p50, p99}
				failed += r.failed
				k := fmt.Sprintf("%s_%%s_at_%s", t.name, rateKey(rate))
				m.add(fmt.Sprintf(k, "p50_ms"), p50)
				m.add(fmt.Sprintf(k, "p99_ms"), p99)
				m.add(fmt.Sprintf(k, "max_inflight"), float64(r.maxInFlight))
				m.add(fmt.Sprintf(k, "achieved_rps"), float64(len(r.latencies))/r.elapsed.Seconds())
				if t.pids != nil {
					m.add(fmt.Sprintf("%s_cpu_ms_per_1k_at_%s", t.name, rateKey(rate)), cpuMs/float64(len(r.latencies))*1000)
				}
				fmt.Fprintf(os.Stderr, "round %d/%d %5d req/s %-9s p50 %.3f ms p99 %.3f ms cpu %.1f ms/1k inflight<=%d failed %d\n",
					round+1, s.rounds, rate, t.name, p50, p99, cpuMs/float64(max(len(r.latencies), 1))*1000, r.maxInFlight, r.failed)
			}
			for _, t := range order {
				if t.pids != nil {
					k := fmt.Sprintf("%s_added_%%s_ms_at_%s", t.name, rateKey(rate))
					m.add(fmt.Sprintf(k, "p50"), direct[t.name][0]-direct["direct"][0])
					m.add(fmt.Sprintf(k, "p99"), direct[t.name][1]-direct["direct"][1])
				}
			}
		}
		if s.grpcRate > 0 {
			if err := grpcRound(s, order, round, m, &failed); err != nil {
				return nil, err
			}
		}
		rates := map[string]float64{}
		for _, t := range order {
			before, genBefore, wall := cpuNs(t.pids), cpuNs([]int{os.Getpid()}), time.Now()
			stop := rssWatch([]target{t}, peak)
			rps, f := closedLoop(t.addr, t.request, s.conns, s.maxPhase)
			stop()
			failed += f
			rates[t.name] = rps
			m.add(t.name+"_max_rps", rps)
			if t.pids != nil {
				m.add(t.name+"_cpu_ms_per_1k_at_max", float64(cpuNs(t.pids)-before)/1e6/(rps*s.maxPhase.Seconds())*1000)
			} else {
				m.add("generator_busy_share_at_direct_max", float64(cpuNs([]int{os.Getpid()})-genBefore)/float64(time.Since(wall).Nanoseconds()))
			}
			fmt.Fprintf(os.Stderr, "round %d/%d closed loop %-9s %.0f req/s\n", round+1, s.rounds, t.name, rps)
		}
		for _, t := range order {
			if t.pids != nil {
				m.add(t.name+"_max_rate_ratio", rates[t.name]/rates["direct"])
				m.add(t.name+"_rss_mib", peak[t.name])
			}
		}
	}
	out := map[string]any{
		"proxy_rounds":          s.rounds,
		"proxy_phase_s":         s.phase.Seconds(),
		"proxy_failed_requests": failed,
	}
	for k, v := range m {
		out[k] = median(v)
	}
	// The long-standing keys: meshproxy, one hop, at 1000 req/s.
	if _, ok := m["meshproxy_added_p50_ms_at_1k"]; ok {
		out["proxy_added_p50_ms"] = out["meshproxy_added_p50_ms_at_1k"]
		out["proxy_added_p99_ms"] = out["meshproxy_added_p99_ms_at_1k"]
		out["proxy_throughput_ratio"] = out["meshproxy_max_rate_ratio"]
		out["proxy_rss_mib"] = out["meshproxy_rss_mib"]
	}
	return out, nil
}

// rateKey names a rate in keys: 1000 -> "1k", 5000 -> "5k", 750 -> "750".
func rateKey(rate int) string {
	if rate%1000 == 0 {
		return strconv.Itoa(rate/1000) + "k"
	}
	return strconv.Itoa(rate)
}
