// Package mesh is the mesh proxy: endpoint discovery from EndpointSlices, routing to the
// destination pod (sidecar) or to the destination node's proxy (node mode), Via trails.
package mesh

import (
	"fmt"
	"net"
	"strings"
)

// Destination is a Service the caller asked for, in forward-proxy form (http://svc.ns/...).
type Destination struct {
	Service   string
	Namespace string
	Port      string
}

// Key is how the endpoint store indexes services.
func (d Destination) Key() string { return d.Namespace + "/" + d.Service }

// ParseHost turns a request host into a Service: "svc", "svc:80", "svc.ns",
// "svc.ns.svc", "svc.ns.svc.cluster.local". A bare name belongs to defaultNamespace.
func ParseHost(host, defaultNamespace string) (Destination, error) {
	name, port := host, ""
	if h, p, err := net.SplitHostPort(host); err == nil {
		name, port = h, p
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "" {
		return Destination{}, fmt.Errorf("empty host")
	}
	if net.ParseIP(name) != nil {
		return Destination{}, fmt.Errorf("host %q is an IP address, not a Service name", name)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return Destination{}, fmt.Errorf("host %q has an empty label", name)
		}
	}
	switch {
	case len(labels) == 1:
		if defaultNamespace == "" {
			return Destination{}, fmt.Errorf("host %q has no namespace and the proxy serves all namespaces", name)
		}
		return Destination{Service: labels[0], Namespace: defaultNamespace, Port: port}, nil
	case len(labels) == 2:
		return Destination{Service: labels[0], Namespace: labels[1], Port: port}, nil
	case labels[2] == "svc":
		return Destination{Service: labels[0], Namespace: labels[1], Port: port}, nil
	}
	return Destination{}, fmt.Errorf("host %q is not a cluster Service name", name)
}
