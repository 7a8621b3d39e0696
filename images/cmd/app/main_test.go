package main

import (
	"testing"

	"patternbench.local/images/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

func TestBadConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "SERVICE_NAME")
	cmdtest.ExpectOneLineNaming(t, "MESH_PROXY", "SERVICE_NAME=a", "MESH_PROXY=not-an-address")
	cmdtest.ExpectOneLineNaming(t, "DRAIN", "SERVICE_NAME=a", "DRAIN=soon")
	cmdtest.ExpectOneLineNaming(t, "LOG_PATH", "SERVICE_NAME=a", "LOG_PATH=/nonexistent/dir/app.log", "LISTEN=127.0.0.1:0")
}
