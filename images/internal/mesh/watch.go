package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// API is the smallest Kubernetes REST client the proxy needs: list and watch of
// EndpointSlices, authenticated with the pod's service-account token.
type API struct {
	Base      string // https://host:port
	TokenFile string // re-read on every request: projected tokens rotate
	HTTP      *http.Client
}

// InClusterAPI builds an API from the standard in-cluster environment and files.
func InClusterAPI() (*API, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, fmt.Errorf("KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)")
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
	caPEM, err := os.ReadFile(sa + "ca.crt")
	if err != nil {
		return nil, fmt.Errorf("reading the service-account CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %sca.crt", sa)
	}
	transport := &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ResponseHeaderTimeout: 15 * time.Second,
		IdleConnTimeout:       90 * time.Second,
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return &API{Base: "https://" + host + ":" + port, TokenFile: sa + "token", HTTP: &http.Client{Transport: transport}}, nil
}

func (a *API) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.Base+path, nil)
	if err != nil {
		return nil, err
	}
	if a.TokenFile != "" {
		token, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	}
	req.Header.Set("Accept", "application/json")
	return a.HTTP.Do(req)
}

type sliceObject struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		Labels          map[string]string `json:"labels"`
		ResourceVersion string            `json:"resourceVersion"`
	} `json:"metadata"`
	AddressType string `json:"addressType"`
	Endpoints   []struct {
		Addresses  []string `json:"addresses"`
		Conditions struct {
			Ready *bool `json:"ready"`
		} `json:"conditions"`
		NodeName  string `json:"nodeName"`
		TargetRef *struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"targetRef"`
	} `json:"endpoints"`
	Ports []struct {
		Port     *int   `json:"port"`
		Protocol string `json:"protocol"`
	} `json:"ports"`
}

// serviceKey is namespace/service of the Service a slice belongs to ("" if none).
func (o *sliceObject) serviceKey() string {
	svc := o.Metadata.Labels["kubernetes.io/service-name"]
	if svc == "" {
		return ""
	}
	return o.Metadata.Namespace + "/" + svc
}

// waypointFor is the service key a waypoint's slice takes calls for ("" if none).
func (o *sliceObject) waypointFor() string {
	target := o.Metadata.Labels[WaypointLabel]
	if target == "" {
		return ""
	}
	return o.Metadata.Namespace + "/" + target
}

// endpoints: the IPv4 addresses on the first TCP port, each marked NotReady unless ready (nil
// counts as ready, as the API says).
func (o *sliceObject) endpoints() []Endpoint {
	if o.AddressType != "" && o.AddressType != "IPv4" {
		return nil
	}
	port := 0
	for _, p := range o.Ports {
		if p.Port != nil && (p.Protocol == "" || p.Protocol == "TCP") {
			port = *p.Port
			break
		}
	}
	if port == 0 {
		return nil
	}
	var eps []Endpoint
	for _, e := range o.Endpoints {
		notReady := e.Conditions.Ready != nil && !*e.Conditions.Ready
		pod := ""
		if e.TargetRef != nil && e.TargetRef.Kind == "Pod" {
			pod = e.TargetRef.Name
		}
		for _, addr := range e.Addresses {
			eps = append(eps, Endpoint{IP: addr, Port: port, NodeName: e.NodeName, PodName: pod, NotReady: notReady})
		}
	}
	return eps
}

// Watcher keeps a Store in sync with the EndpointSlices of one namespace (or all: "").
type Watcher struct {
	API       *API
	Namespace string
	Store     *Store
	Logf      func(format string, args ...any)
	// Synced is closed after the first successful list.
	Synced chan struct{}
	// WatchTimeout is the server-side timeout of one watch request.
	WatchTimeout time.Duration
	MaxBackoff   time.Duration
}

func (w *Watcher) path() string {
	if w.Namespace == "" {
		return "/apis/discovery.k8s.io/v1/endpointslices"
	}
	return "/apis/discovery.k8s.io/v1/namespaces/" + w.Namespace + "/endpointslices"
}

// errGone means the watch's resourceVersion is too old: list again.
var errGone = fmt.Errorf("410 Gone: resource version too old")

// Run lists, then watches, re-listing on 410 Gone and reconnecting with backoff on any
// other failure, until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	if w.Logf == nil {
		w.Logf = func(string, ...any) {}
	}
	if w.WatchTimeout == 0 {
		w.WatchTimeout = 240 * time.Second
	}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = 5 * time.Second
	}
	backoff := 100 * time.Millisecond
	sleep := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, w.MaxBackoff)
		return true
	}
	synced := false
	for ctx.Err() == nil {
		rv, err := w.list(ctx)
		if err != nil {
			w.Logf("endpointslices list: %v", err)
			if !sleep() {
				return
			}
			continue
		}
		if !synced && w.Synced != nil {
			close(w.Synced)
		}
		synced = true
		backoff = 100 * time.Millisecond
		for ctx.Err() == nil {
			rv, err = w.watch(ctx, rv)
			if err == errGone {
				w.Logf("endpointslices watch: %v; re-listing", err)
				break
			}
			if err != nil && ctx.Err() == nil {
				w.Logf("endpointslices watch: %v; reconnecting", err)
				if !sleep() {
					return
				}
			}
		}
	}
}

func (w *Watcher) list(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := w.API.get(ctx, w.path())
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return "", fmt.Errorf("list: HTTP %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var list struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
		} `json:"metadata"`
		Items []sliceObject `json:"items"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return "", fmt.Errorf("list: decoding: %w", err)
	}
	all := map[string]map[string][]Endpoint{}
	waypoints := map[string]map[string]string{}
	for i := range list.Items {
		item := &list.Items[i]
		key := item.serviceKey()
		if key == "" {
			continue
		}
		if all[key] == nil {
			all[key] = map[string][]Endpoint{}
		}
		all[key][item.Metadata.Name] = item.endpoints()
		if target := item.waypointFor(); target != "" {
			if waypoints[key] == nil {
				waypoints[key] = map[string]string{}
			}
			waypoints[key][item.Metadata.Name] = target
		}
	}
	w.Store.Replace(all)
	w.Store.ReplaceWaypoints(waypoints)
	return list.Metadata.ResourceVersion, nil
}

// watch streams events from rv; returns the last resourceVersion seen.
func (w *Watcher) watch(ctx context.Context, rv string) (string, error) {
	timeout := int(w.WatchTimeout.Seconds())
	ctx, cancel := context.WithTimeout(ctx, w.WatchTimeout+15*time.Second)
	defer cancel()
	path := fmt.Sprintf("%s?watch=1&allowWatchBookmarks=true&resourceVersion=%s&timeoutSeconds=%d", w.path(), rv, timeout)
	resp, err := w.API.get(ctx, path)
	if err != nil {
		return rv, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusGone {
		return rv, errGone
	}
	if resp.StatusCode != http.StatusOK {
		return rv, fmt.Errorf("watch: HTTP %d", resp.StatusCode)
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var event struct {
			Type   string          `json:"type"`
			Object json.RawMessage `json:"object"`
		}
		if err := dec.Decode(&event); err != nil {
			if err == io.EOF {
				return rv, nil // the server ended the watch: resume from rv
			}
			return rv, err
		}
		if event.Type == "ERROR" {
			var status struct {
				Code int `json:"code"`
			}
			_ = json.Unmarshal(event.Object, &status)
			if status.Code == http.StatusGone {
				return rv, errGone
			}
			return rv, fmt.Errorf("watch error event: %s", string(event.Object))
		}
		var obj sliceObject
		if err := json.Unmarshal(event.Object, &obj); err != nil {
			return rv, err
		}
		if obj.Metadata.ResourceVersion != "" {
			rv = obj.Metadata.ResourceVersion
		}
		key := obj.serviceKey()
		switch event.Type {
		case "ADDED", "MODIFIED":
			if key != "" {
				w.Store.SetSlice(key, obj.Metadata.Name, obj.endpoints())
				w.Store.SetWaypoint(key, obj.Metadata.Name, obj.waypointFor())
			}
		case "DELETED":
			if key != "" {
				w.Store.DeleteSlice(key, obj.Metadata.Name)
			}
		}
	}
}
