// Command injector is a mutating admission webhook that adds sidecars to app pods as they
// are created, from a template it reads at run time (internal/inject). It serves HTTPS:
// POST /mutate (admission.k8s.io/v1 AdmissionReview in and out, a JSONPatch), GET /healthz,
// /readyz and /template (the template version in use, for an upgrade to wait on).
//
// Settings: TLS_CERT, TLS_KEY (PEM files, e.g. a kubernetes.io/tls Secret's volume),
// TEMPLATE (a JSON template file, e.g. a ConfigMap's volume), LISTEN (default :8443),
// RELOAD (how often the files are read again, default 1s).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"patternbench.local/images/internal/config"
	"patternbench.local/images/internal/inject"
	"patternbench.local/images/internal/serve"
)

var version = "dev"

func main() {
	if config.VersionRequested("injector", version) {
		return
	}
	env := config.FromOS()
	certFile := env.Required("TLS_CERT")
	keyFile := env.Required("TLS_KEY")
	templateFile := env.Required("TEMPLATE")
	listen := env.Addr("LISTEN", ":8443")
	every := env.Duration("RELOAD", time.Second)
	if env.Err == nil && every <= 0 {
		env.Err = &config.Error{Setting: "RELOAD", Problem: "must be above 0"}
	}
	if env.Err != nil {
		config.Fail("injector", env.Err)
	}
	logger := log.New(os.Stderr, "injector: ", log.LstdFlags|log.LUTC)

	// The first load happens before listening: a pod that cannot read its template or its
	// certificate exits with one line naming the setting instead of serving refusals.
	certs := &inject.Certificates{}
	certWatch := &inject.Watch{Paths: []string{certFile, keyFile}, Every: every, Load: certs.Load, Log: logger}
	if _, err := certWatch.Once(); err != nil {
		config.Fail("injector", &config.Error{Setting: "TLS_CERT/TLS_KEY", Problem: err.Error()})
	}
	templates := &inject.Templates{Log: logger}
	templateWatch := &inject.Watch{Paths: []string{templateFile}, Every: every, Load: templates.Load, Log: logger}
	if _, err := templateWatch.Once(); err != nil {
		config.Fail("injector", &config.Error{Setting: "TEMPLATE", Problem: err.Error()})
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go templateWatch.Run(ctx)
	go certWatch.Run(ctx)

	draining := &serve.Draining{}
	mux := http.NewServeMux()
	mux.Handle("POST /mutate", &inject.Handler{Current: templates.Current, Log: logger})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if draining.Is() || templates.Current() == nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /template", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(templates.Status())
	})
	ln, err := serve.Listen(listen, false)
	if err != nil {
		config.Fail("injector", &config.Error{Setting: "LISTEN", Problem: err.Error()})
	}
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
	// A client that sends its review a byte at a time, or holds an idle connection, is cut
	// off: the API server's own webhook timeout is 10 s, so no honest review needs longer.
	server := &http.Server{
		Handler: mux, TLSConfig: tlsConfig, MaxHeaderBytes: 64 << 10,
		ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second, IdleTimeout: 60 * time.Second,
	}
	logger.Printf("%s serving on %s, template %s", version, listen, templates.Current().Version)
	// Drain: the Service keeps sending reviews for a moment after the pod is marked
	// terminating; the other replica takes over once the endpoints drop this one.
	group := &serve.Group{Servers: []serve.Server{server}, Drain: 2 * time.Second, Grace: 5 * time.Second, Draining: draining}
	if err := group.Serve([]net.Listener{tls.NewListener(ln, tlsConfig)}); err != nil {
		fmt.Fprintf(os.Stderr, "injector: %v\n", err)
		os.Exit(1)
	}
}
