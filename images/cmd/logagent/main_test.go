package main

import (
	"testing"

	"patternbench.local/images/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

func TestBadConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "SINK_URL", "MODE=sidecar", "LOG_GLOB=/tmp/x")
	cmdtest.ExpectOneLineNaming(t, "SINK_URL", "SINK_URL=ftp://x", "LOG_GLOB=/tmp/x")
	cmdtest.ExpectOneLineNaming(t, "LOG_GLOB", "SINK_URL=http://sink:8080/ingest")
	cmdtest.ExpectOneLineNaming(t, "PODS_DIR", "MODE=node", "SINK_URL=http://sink:8080/ingest", "PODS_DIR=/nonexistent")
	cmdtest.ExpectOneLineNaming(t, "MODE", "MODE=cluster", "SINK_URL=http://sink:8080/ingest")
}
