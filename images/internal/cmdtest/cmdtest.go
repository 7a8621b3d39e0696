// Package cmdtest runs a command's main() in a child process from its tests, to check what
// the binary itself does with bad settings: exit status and its one-line message.
package cmdtest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

const envRunMain = "PB_RUN_MAIN"

// Main is the body of a command package's TestMain: in the child it runs the command.
func Main(m *testing.M, main func()) {
	if os.Getenv(envRunMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// Run runs the command with only the given environment; returns exit code and stderr.
func Run(t *testing.T, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{envRunMain + "=1", "PATH=" + os.Getenv("PATH")}, env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	code := 0
	if exitErr, ok := err.(*exec.ExitError); ok {
		code = exitErr.ExitCode()
	}
	return code, stderr.String()
}

// ExpectOneLineNaming: the command must fail with one line that names the setting.
func ExpectOneLineNaming(t *testing.T, setting string, env ...string) {
	t.Helper()
	code, stderr := Run(t, env...)
	if code == 0 {
		t.Fatalf("%v: exit 0", env)
	}
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, setting) {
		t.Fatalf("%v: stderr %q should be one line naming %s", env, stderr, setting)
	}
}
