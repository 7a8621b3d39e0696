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

func TestBadAmbientConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "NODE_NAME", "MODE=l4", "NODE_PROXIES=a/b")
	cmdtest.ExpectOneLineNaming(t, "NODE_PROXIES", "MODE=l4", "NODE_NAME=n1")
	cmdtest.ExpectOneLineNaming(t, "PEER_PORT", "MODE=l4", "NODE_NAME=n1", "NODE_PROXIES=a/b", "PEER_PORT=0")
	cmdtest.ExpectOneLineNaming(t, "NAMESPACE", "MODE=waypoint", "WAYPOINT_FOR=orders", "NODE_PROXIES=a/b")
	cmdtest.ExpectOneLineNaming(t, "WAYPOINT_FOR", "MODE=waypoint", "NAMESPACE=demo", "NODE_PROXIES=a/b")
	cmdtest.ExpectOneLineNaming(t, "WAYPOINT_FOR", "MODE=waypoint", "NAMESPACE=demo", "WAYPOINT_FOR=orders.demo", "NODE_PROXIES=a/b")
	cmdtest.ExpectOneLineNaming(t, "NODE_PROXIES", "MODE=waypoint", "NAMESPACE=demo", "WAYPOINT_FOR=orders")
	cmdtest.ExpectOneLineNaming(t, "KUBERNETES_SERVICE_HOST", "MODE=l4", "NODE_NAME=n1", "NODE_PROXIES=a/b")
}
