package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// procs owns every process the bench starts: each runs in its own process group, pinned
// with taskset, and dies with the bench (Pdeathsig) even if the bench is killed outright.
type procs struct {
	mu   sync.Mutex
	cmds []*exec.Cmd
}

func (p *procs) start(cpu string, env []string, argv ...string) (*exec.Cmd, error) {
	args := append([]string{"-c", cpu}, argv...)
	cmd := exec.Command("taskset", args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", argv[0], err)
	}
	p.mu.Lock()
	p.cmds = append(p.cmds, cmd)
	p.mu.Unlock()
	return cmd, nil
}

// stopAll kills every process group the bench started and reaps them.
func (p *procs) stopAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.cmds {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
	for _, c := range p.cmds {
		_ = c.Wait()
	}
	p.cmds = nil
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitHTTP polls until a raw request to addr answers 200, or fails after 10 s.
func waitHTTP(addr string, request []byte) error {
	deadline := time.Now().Add(10 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		c, err := dial(addr)
		if err == nil {
			err = c.do(request)
			c.close()
			if err == nil {
				return nil
			}
		}
		last = err
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s never answered 200: %v", addr, last)
}

// endpointAPI serves a minimal EndpointSlice list (one ready endpoint) and an idle watch,
// so meshproxy discovers the app the way it does in a cluster.
func endpointAPI(appPort int) (string, error) {
	body := fmt.Sprintf(`{"metadata":{"resourceVersion":"1"},"items":[{"metadata":{"name":"app-1","namespace":"bench",`+
		`"labels":{"kubernetes.io/service-name":"app"}},"addressType":"IPv4","endpoints":[{"addresses":["127.0.0.1"],`+
		`"conditions":{"ready":true}}],"ports":[{"port":%d,"protocol":"TCP"}]}]}`, appPort)
	mux := http.NewServeMux()
	mux.HandleFunc("/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "" {
			<-r.Context().Done()
			return
		}
		_, _ = io.WriteString(w, body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go func() { _ = http.Serve(ln, mux) }()
	return "http://" + ln.Addr().String(), nil
}

// haproxyConfig: one frontend, one backend with a keep-alive pool to the app, one thread,
// Via added on request and response as meshproxy does.
func haproxyConfig(port, appPort int) string {
	return fmt.Sprintf(`global
    nbthread 1
    maxconn 8192
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 10s
    timeout http-keep-alive 60s
    option http-keep-alive
    http-reuse always
frontend hop
    bind 127.0.0.1:%d
    http-request add-header Via "1.1 haproxy"
    http-response add-header Via "1.1 haproxy"
    default_backend app
backend app
    server app 127.0.0.1:%d maxconn 1024
`, port, appPort)
}

// nginxConfig: one worker process (no master, so the bench owns exactly one process), an
// upstream keep-alive pool to the app, Via added on request and response.
func nginxConfig(dir string, port, appPort int) string {
	return fmt.Sprintf(`daemon off;
master_process off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path %[1]s/body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream app {
        server 127.0.0.1:%[3]d;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:%[2]d;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header Via "1.1 nginx";
            add_header Via "1.1 nginx";
        }
    }
}
`, dir, port, appPort)
}

func writeFile(dir, name, text string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(text), 0o644)
}

// childPids: pid and its direct children (a proxy that forks workers is measured whole).
func childPids(pid int) []int {
	pids := []int{pid}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(data)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			pids = append(pids, n)
		}
	}
	return pids
}
