package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain lets a test run this command's main() in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("PB_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runMain runs main() with only the given environment; returns exit code and stderr.
func runMain(t *testing.T, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{"PB_RUN_MAIN=1", "PATH=" + os.Getenv("PATH")}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	}
	return code, stderr.String()
}

func expectOneLineNaming(t *testing.T, setting string, env ...string) {
	t.Helper()
	code, stderr := runMain(t, env...)
	if code == 0 {
		t.Fatalf("%v: exit 0", env)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, setting) {
		t.Fatalf("%v: stderr %q should be one line naming %s", env, stderr, setting)
	}
}

func TestBadConfiguration(t *testing.T) {
	expectOneLineNaming(t, "SINK_URL", "MODE=sidecar", "LOG_GLOB=/tmp/x")
	expectOneLineNaming(t, "SINK_URL", "SINK_URL=ftp://x", "LOG_GLOB=/tmp/x")
	expectOneLineNaming(t, "LOG_GLOB", "SINK_URL=http://sink:8080/ingest")
	expectOneLineNaming(t, "PODS_DIR", "MODE=node", "SINK_URL=http://sink:8080/ingest", "PODS_DIR=/nonexistent")
	expectOneLineNaming(t, "MODE", "MODE=cluster", "SINK_URL=http://sink:8080/ingest")
}
