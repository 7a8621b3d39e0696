package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"patternbench.local/images/internal/cmdtest"
	"patternbench.local/images/internal/inject"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

// selfSigned writes a certificate for 127.0.0.1 and its key; returns their paths and a pool
// that trusts it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "injector.test.svc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true, DNSNames: []string{"injector.test.svc"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	_ = os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestBadConfiguration(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	template := "../../internal/inject/testdata/sidecar/template.json"
	good := []string{"TLS_CERT=" + certFile, "TLS_KEY=" + keyFile, "TEMPLATE=" + template}
	cmdtest.ExpectOneLineNaming(t, "TLS_CERT", good[1:]...)
	cmdtest.ExpectOneLineNaming(t, "TEMPLATE", good[:2]...)
	cmdtest.ExpectOneLineNaming(t, "LISTEN", append(good, "LISTEN=everywhere")...)
	cmdtest.ExpectOneLineNaming(t, "RELOAD", append(good, "RELOAD=soon")...)
	cmdtest.ExpectOneLineNaming(t, "TEMPLATE", "TLS_CERT="+certFile, "TLS_KEY="+keyFile, "TEMPLATE="+filepath.Join(dir, "missing.json"))
	_ = os.WriteFile(filepath.Join(dir, "bad.json"), []byte(`{"version":""}`), 0o600)
	cmdtest.ExpectOneLineNaming(t, "TEMPLATE", "TLS_CERT="+certFile, "TLS_KEY="+keyFile, "TEMPLATE="+filepath.Join(dir, "bad.json"))
	cmdtest.ExpectOneLineNaming(t, "TLS_CERT", "TLS_CERT="+keyFile, "TLS_KEY="+keyFile, "TEMPLATE="+template)
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// The binary itself over HTTPS: readiness, /template, a review answered with a patch, and a
// graceful stop on SIGTERM.
func TestServesReviewsOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	addr := freePort(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"PB_RUN_MAIN=1", "TLS_CERT=" + certFile, "TLS_KEY=" + keyFile, "LISTEN=" + addr,
		"TEMPLATE=../../internal/inject/testdata/sidecar/template.json"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill() }()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + addr
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v; stderr %s", err, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	resp, err := client.Get(base + "/template")
	if err != nil {
		t.Fatal(err)
	}
	var status inject.TemplateStatus
	_ = json.NewDecoder(resp.Body).Decode(&status)
	resp.Body.Close()
	if status.Version != "v1" || len(status.SHA256) != 64 {
		t.Fatalf("template status %+v", status)
	}
	pod, _ := os.ReadFile("../../internal/inject/testdata/sidecar/pod.json")
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"abc","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":` + string(pod) + `}}`
	resp, err = client.Post(base+"/mutate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var out inject.AdmissionReview
	_ = json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out.Response == nil || out.Response.UID != "abc" || !out.Response.Allowed || len(out.Response.Patch) == 0 {
		t.Fatalf("review answer %+v", out)
	}
	if resp, err := client.Post(base+"/mutate", "application/json", strings.NewReader("{")); err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed review: %v %v", resp, err)
	}
	if resp, err := client.Get(base + "/mutate"); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /mutate: %v %v", resp, err)
	}
	// A review sent a byte at a time is cut off by the read timeout (10 s), not waited on.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, _ = conn.Write([]byte("POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"))
	for time.Since(start) < 30*time.Second {
		if _, err := conn.Write([]byte(" ")); err != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	conn.Close()
	if held := time.Since(start); held > 15*time.Second {
		t.Fatalf("a trickled review held its connection %v", held)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v; stderr %s", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit 10 s after SIGTERM")
	}
	if !strings.Contains(stderr.String(), "injected template v1") {
		t.Fatalf("no log line for the injection: %s", stderr.String())
	}
}
