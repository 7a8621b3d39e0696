package inject

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The test data is written by tests/unit/test_injection.py from the client-side render:
// pod.json is an app pod as its ReplicaSet creates it with webhook injection, want.json the
// pod spec the client-side render gives the same pod.

func readJSON(t *testing.T, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func loadTemplate(t *testing.T, path string) *Loaded {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseTemplate(data)
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// ---- a small RFC 6902 applier (add and remove: all the injector emits) -------------------

func unescape(token string) string {
	return strings.ReplaceAll(strings.ReplaceAll(token, "~1", "/"), "~0", "~")
}

// apply runs ops on a decoded JSON document and returns the result.
func apply(t *testing.T, doc any, ops []Op) any {
	t.Helper()
	for _, op := range ops {
		if !strings.HasPrefix(op.Path, "/") {
			t.Fatalf("path %q does not start with /", op.Path)
		}
		tokens := strings.Split(op.Path[1:], "/")
		for i := range tokens {
			tokens[i] = unescape(tokens[i])
		}
		// Round-trip the value so it is plain decoded JSON, like the document.
		var value any
		if op.Op == "add" {
			raw, _ := json.Marshal(op.Value)
			_ = json.Unmarshal(raw, &value)
		}
		var err error
		doc, err = applyAt(doc, tokens, op.Op, value)
		if err != nil {
			t.Fatalf("%s %s: %v", op.Op, op.Path, err)
		}
	}
	return doc
}

func applyAt(node any, tokens []string, op string, value any) (any, error) {
	key, last := tokens[0], len(tokens) == 1
	switch n := node.(type) {
	case map[string]any:
		if last {
			switch op {
			case "add":
				n[key] = value
			case "remove":
				if _, ok := n[key]; !ok {
					return nil, fmt.Errorf("no member %q to remove", key)
				}
				delete(n, key)
			default:
				return nil, fmt.Errorf("unsupported op %q", op)
			}
			return n, nil
		}
		child, ok := n[key]
		if !ok {
			return nil, fmt.Errorf("no member %q", key)
		}
		updated, err := applyAt(child, tokens[1:], op, value)
		n[key] = updated
		return n, err
	case []any:
		if last && op == "add" && key == "-" {
			return append(n, value), nil
		}
		i, err := strconv.Atoi(key)
		if err != nil || i < 0 || i > len(n) || (i == len(n) && !(last && op == "add")) {
			return nil, fmt.Errorf("bad index %q for an array of %d", key, len(n))
		}
		if last {
			if op == "add" {
				return append(n[:i], append([]any{value}, n[i:]...)...), nil
			}
			return append(n[:i], n[i+1:]...), nil
		}
		updated, err := applyAt(n[i], tokens[1:], op, value)
		n[i] = updated
		return n, err
	default:
		return nil, fmt.Errorf("cannot descend into %T at %q", node, key)
	}
}

// ---- reviews ----------------------------------------------------------------------------

func review(t *testing.T, pod any, tmpl *Loaded) *AdmissionResponse {
	t.Helper()
	raw, _ := json.Marshal(pod)
	body, _ := json.Marshal(AdmissionReview{
		APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview",
		Request: &AdmissionRequest{UID: "uid-1", Kind: GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "pb-test-0001", Operation: "CREATE", Object: raw},
	})
	out, err := Review(body, tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if out.Response.UID != "uid-1" || out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" {
		t.Fatalf("response does not answer the request: %+v", out)
	}
	return out.Response
}

func patched(t *testing.T, pod any, resp *AdmissionResponse) any {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("refused: %+v", resp.Result)
	}
	if resp.PatchType == nil {
		return pod
	}
	if *resp.PatchType != "JSONPatch" {
		t.Fatalf("patchType %q", *resp.PatchType)
	}
	var ops []Op
	if err := json.Unmarshal(resp.Patch, &ops); err != nil {
		t.Fatalf("patch: %v", err)
	}
	return apply(t, pod, ops)
}

func field(v any, path ...string) any {
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func TestInjectedPodIsTheClientSideRenderedPod(t *testing.T) {
	for _, c := range []string{"sidecar", "hybrid"} {
		t.Run(c, func(t *testing.T) {
			dir := filepath.Join("testdata", c)
			pod := readJSON(t, filepath.Join(dir, "pod.json"))
			tmpl := loadTemplate(t, filepath.Join(dir, "template.json"))
			want := readJSON(t, filepath.Join(dir, "want.json"))
			got := patched(t, pod, review(t, pod, tmpl))
			if !reflect.DeepEqual(field(got, "spec"), want) {
				g, _ := json.MarshalIndent(field(got, "spec"), "", " ")
				w, _ := json.MarshalIndent(want, "", " ")
				t.Fatalf("injected spec differs from the client-side one:\n got %s\nwant %s", g, w)
			}
			if v := field(got, "metadata", "annotations", AnnotationInjected); v != "v1" {
				t.Fatalf("annotation %s = %v", AnnotationInjected, v)
			}
			// Apart from the annotation, metadata is untouched.
			meta := field(got, "metadata").(map[string]any)
			delete(meta, "annotations")
			orig := readJSON(t, filepath.Join(dir, "pod.json"))
			if !reflect.DeepEqual(meta, field(orig, "metadata")) {
				t.Fatalf("metadata changed: %v", meta)
			}
		})
	}
}

func TestInjectionIsIdempotent(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/sidecar/template.json")
	pod := readJSON(t, "testdata/sidecar/pod.json")
	once := patched(t, pod, review(t, pod, tmpl))
	if resp := review(t, once, tmpl); resp.PatchType != nil || !resp.Allowed {
		t.Fatalf("an injected pod was patched again: %+v", resp)
	}
	// A pod injected client-side (the sidecars there, no annotation) is left alone too.
	clientSide := readJSON(t, "testdata/sidecar/pod.json").(map[string]any)
	clientSide["spec"] = readJSON(t, "testdata/sidecar/want.json")
	if resp := review(t, clientSide, tmpl); resp.PatchType != nil || !resp.Allowed {
		t.Fatalf("a client-side injected pod was patched: %+v", resp)
	}
}

func TestSkipAnnotation(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/sidecar/template.json")
	pod := readJSON(t, "testdata/sidecar/pod.json").(map[string]any)
	pod["metadata"].(map[string]any)["annotations"] = map[string]any{AnnotationInject: "false"}
	if resp := review(t, pod, tmpl); resp.PatchType != nil || !resp.Allowed {
		t.Fatalf("an opted-out pod was patched: %+v", resp)
	}
	pod["metadata"].(map[string]any)["annotations"] = map[string]any{AnnotationInject: "true", "other/key": "x"}
	got := patched(t, pod, review(t, pod, tmpl))
	want := map[string]any{AnnotationInject: "true", "other/key": "x", AnnotationInjected: "v1"}
	if a := field(got, "metadata", "annotations"); !reflect.DeepEqual(a, want) {
		t.Fatalf("annotations %v, want %v (an existing map gets one escaped key)", a, want)
	}
}

func TestAbsentArraysAndEnvSetting(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/sidecar/template.json")
	// No env, no volumeMounts, no initContainers, no volumes, no annotations; and a second
	// container the template does not name.
	pod := map[string]any{"metadata": map[string]any{}, "spec": map[string]any{"containers": []any{
		map[string]any{"name": "other"},
		map[string]any{"name": "app", "env": nil},
	}}}
	got := patched(t, pod, review(t, pod, tmpl))
	if n := len(field(got, "spec", "initContainers").([]any)); n != len(tmpl.InitContainers) {
		t.Fatalf("%d init containers", n)
	}
	if n := len(field(got, "spec", "volumes").([]any)); n != len(tmpl.Volumes) {
		t.Fatalf("%d volumes", n)
	}
	app := field(got, "spec", "containers").([]any)[1]
	if n := len(field(app, "env").([]any)); n != 2 {
		t.Fatalf("app env %v", field(app, "env"))
	}
	if other := field(got, "spec", "containers").([]any)[0]; !reflect.DeepEqual(other, map[string]any{"name": "other"}) {
		t.Fatalf("a container the template does not name was changed: %v", other)
	}
	// A variable the app already has is set: the old entry goes, the new one is appended.
	pod = map[string]any{"metadata": map[string]any{}, "spec": map[string]any{"containers": []any{
		map[string]any{"name": "app", "env": []any{
			map[string]any{"name": "MESH_PROXY", "value": "old"},
			map[string]any{"name": "KEEP", "value": "1"},
			map[string]any{"name": "LOG_PATH", "value": "old"},
		}},
	}}}
	got = patched(t, pod, review(t, pod, tmpl))
	var names []string
	for _, e := range field(got, "spec", "containers").([]any)[0].(map[string]any)["env"].([]any) {
		names = append(names, e.(map[string]any)["name"].(string)+"="+e.(map[string]any)["value"].(string))
	}
	if want := "KEEP=1 MESH_PROXY=127.0.0.1:15001 LOG_PATH=/var/log/app/app.log"; strings.Join(names, " ") != want {
		t.Fatalf("env %v, want %s", names, want)
	}
}

func TestEscape(t *testing.T) {
	if got := Escape("patternbench.dev/injected~x"); got != "patternbench.dev~1injected~0x" {
		t.Fatal(got)
	}
	if got := unescape(Escape("a/~1b")); got != "a/~1b" {
		t.Fatal(got)
	}
}

func TestMalformedReviewsAreAnsweredNotCrashedOn(t *testing.T) {
	tmpl := loadTemplate(t, "testdata/sidecar/template.json")
	h := &Handler{Current: func() *Loaded { return tmpl }}
	post := func(body string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(body)))
		return w
	}
	for _, body := range []string{"", "not json", "[]", `{"kind":"AdmissionReview"}`, `{"request":{}}`, `{"request":{"uid":5}}`} {
		if w := post(body); w.Code != http.StatusBadRequest {
			t.Fatalf("%q: status %d", body, w.Code)
		}
	}
	// Larger than the API server ever sends: 413, read no further.
	if w := post(`{"request":{"uid":"u","object":"` + strings.Repeat("x", MaxReviewBytes) + `"}}`); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized review: status %d", w.Code)
	}
	answer := func(body string) AdmissionResponse {
		w := post(body)
		if w.Code != http.StatusOK {
			t.Fatalf("%q: status %d %s", body, w.Code, w.Body)
		}
		var out AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("%q: answer %s", body, w.Body)
		}
		return *out.Response
	}
	// A review with a uid but no readable pod is refused, with the reason, never admitted bare.
	for _, object := range []string{`5`, `"pod"`, `{"spec":{"containers":"x"}}`, `{"spec":{}}`, `{"spec":{"containers":[{"name":"app","env":{"a":1}}]}}`} {
		resp := answer(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":` + object + `}}`)
		if resp.UID != "u" || resp.Allowed || resp.Result == nil || !strings.Contains(resp.Result.Message, "not a pod") {
			t.Fatalf("object %s: %+v", object, resp)
		}
	}
	// Anything but a pod being created passes untouched.
	for _, req := range []string{
		`{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{}}`,
		`{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"UPDATE","object":{}}`,
	} {
		if resp := answer(`{"request":` + req + `}`); !resp.Allowed || resp.PatchType != nil {
			t.Fatalf("%s: %+v", req, resp)
		}
	}
	// No template yet: refused with 503 in the status.
	h.Current = func() *Loaded { return nil }
	pod, _ := os.ReadFile("testdata/sidecar/pod.json")
	resp := answer(`{"request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":` + string(pod) + `}}`)
	if resp.Allowed || resp.Result.Code != http.StatusServiceUnavailable {
		t.Fatalf("no template: %+v", resp)
	}
}

func TestParseTemplateRefusesMistakes(t *testing.T) {
	for body, want := range map[string]string{
		`{"initContainers":[]}`:                                  "version is required",
		`{"version":"v1","initContainer":[]}`:                    "unknown field",
		`{"version":"v1","initContainers":[{"image":"x"}]}`:      "has no name",
		`{"version":"v1","volumes":[{"name":"a"},{"name":"a"}]}`: "twice",
		`{"version":"v1","containers":{"app":{"env":[{}]}}}`:     "containers.app.env[0] has no name",
		`{"version":"v1"} {"version":"v2"}`:                      "more than one",
		`not json`:                                               "template",
	} {
		if _, err := ParseTemplate([]byte(body)); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: error %v, want %q", body, err, want)
		}
	}
}

// kubeletWrite lays out dir as the kubelet's atomic writer does for a ConfigMap volume:
// dir/..<ts>/template.json, dir/..data -> ..<ts>, dir/template.json -> ..data/template.json;
// a later write makes a new ..<ts> and renames a new symlink over ..data.
func kubeletWrite(t *testing.T, dir, stamp string, data []byte) {
	t.Helper()
	ts := filepath.Join(dir, "..2025_01_01_00_00_"+stamp)
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "template.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "template.json")); os.IsNotExist(err) {
		if err := os.Symlink("..data/template.json", filepath.Join(dir, "template.json")); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTemplateReloadPicksUpTheNewVersion(t *testing.T) {
	dir := t.TempDir()
	v1, _ := os.ReadFile("testdata/sidecar/template.json")
	v2, _ := os.ReadFile("testdata/sidecar/template-v2.json")
	kubeletWrite(t, dir, "01", v1)
	templates := &Templates{}
	w := &Watch{Paths: []string{filepath.Join(dir, "template.json")}, Every: time.Second, Load: templates.Load}
	if changed, err := w.Once(); err != nil || !changed {
		t.Fatalf("first load: %v %v", changed, err)
	}
	if v := templates.Current().Version; v != "v1" {
		t.Fatalf("version %s", v)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)

	// A broken update keeps v1 in use.
	kubeletWrite(t, dir, "02", []byte(`{"version":`))
	time.Sleep(1500 * time.Millisecond)
	if v := templates.Current().Version; v != "v1" {
		t.Fatalf("a broken template replaced v1: %s", v)
	}
	if templates.Status().Error == "" {
		t.Fatal("the broken template's error is not reported")
	}

	start := time.Now()
	kubeletWrite(t, dir, "03", v2)
	for templates.Current().Version != "v2" {
		if time.Since(start) > 2500*time.Millisecond {
			t.Fatal("v2 not picked up within 2.5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("v2 in use %v after the ..data swap", time.Since(start).Round(time.Millisecond))
	if s := templates.Status(); s.Version != "v2" || s.Error != "" || s.SHA256 == "" {
		t.Fatalf("status %+v", s)
	}
	// Pods admitted from now on get v2's images and annotation.
	pod := readJSON(t, "testdata/sidecar/pod.json")
	got := patched(t, pod, review(t, pod, templates.Current()))
	if v := field(got, "metadata", "annotations", AnnotationInjected); v != "v2" {
		t.Fatalf("annotation %v", v)
	}
	images := ""
	for _, c := range field(got, "spec", "initContainers").([]any) {
		images += c.(map[string]any)["image"].(string) + " "
	}
	if !strings.Contains(images, "meshproxy:v2") || !strings.Contains(images, "logagent:v2") {
		t.Fatalf("images %s", images)
	}
}

func TestPatchIsValidJSONForTheAPIServer(t *testing.T) {
	// The API server reads patch as base64 in JSON: encoding/json writes []byte so.
	tmpl := loadTemplate(t, "testdata/hybrid/template.json")
	resp := review(t, readJSON(t, "testdata/hybrid/pod.json"), tmpl)
	raw, _ := json.Marshal(resp)
	var generic map[string]any
	_ = json.Unmarshal(raw, &generic)
	if s, ok := generic["patch"].(string); !ok || bytes.ContainsAny([]byte(s), "{[") {
		t.Fatalf("patch is not base64 text: %v", generic["patch"])
	}
	if generic["patchType"] != "JSONPatch" || generic["uid"] != "uid-1" || generic["allowed"] != true {
		t.Fatalf("response %v", generic)
	}
}
