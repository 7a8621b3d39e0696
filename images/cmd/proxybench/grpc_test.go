package main

import (
	"os/exec"
	"testing"
)

// The HAProxy and nginx configurations that carry gRPC are valid for the installed proxies
// (each checks its own file); skipped where a proxy is not installed.
func TestProxyConfigsWithTheGRPCHopAreValid(t *testing.T) {
	dir := t.TempDir()
	if bin, err := exec.LookPath("haproxy"); err == nil {
		cfg, err := writeFile(dir, "haproxy.cfg", haproxyConfig(18001, 18000)+haproxyGRPC(18002, 18000))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-c", "-f", cfg).CombinedOutput(); err != nil {
			t.Errorf("haproxy -c: %v\n%s", err, out)
		}
	} else {
		t.Log("haproxy is not installed")
	}
	if bin, err := exec.LookPath("nginx"); err == nil {
		cfg, err := writeFile(dir, "nginx.conf", nginxWithGRPC(dir, 18003, 18004, 18000))
		if err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(bin, "-t", "-c", cfg, "-e", dir+"/nginx-error.log").CombinedOutput(); err != nil {
			t.Errorf("nginx -t: %v\n%s", err, out)
		}
	} else {
		t.Log("nginx is not installed")
	}
}
