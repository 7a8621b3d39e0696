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
	expectOneLineNaming(t, "LISTEN", "LISTEN=everywhere")
}
