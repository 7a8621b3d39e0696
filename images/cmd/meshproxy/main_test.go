package main

import (
	"testing"

	"patternbench.local/images/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

func TestBadConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "MODE", "MODE=ambient")
	cmdtest.ExpectOneLineNaming(t, "NAMESPACE", "MODE=sidecar")
	cmdtest.ExpectOneLineNaming(t, "NODE_NAME", "MODE=node", "NODE_PROXIES=a/b")
	cmdtest.ExpectOneLineNaming(t, "OUTBOUND", "MODE=sidecar", "NAMESPACE=x", "OUTBOUND=15001")
	cmdtest.ExpectOneLineNaming(t, "KUBERNETES_SERVICE_HOST", "MODE=sidecar", "NAMESPACE=x")
}
