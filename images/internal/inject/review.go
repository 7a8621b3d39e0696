package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"sync"
)

// The admission.k8s.io/v1 types, written out by hand: only the fields the injector reads or
// writes. k8s.io/api would bring k8s.io/apimachinery and its dependencies into the small
// data-plane module for a dozen fields.

// AdmissionReview is the envelope the API server sends and expects back.
type AdmissionReview struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Request    *AdmissionRequest  `json:"request,omitempty"`
	Response   *AdmissionResponse `json:"response,omitempty"`
}

// GroupVersionKind of the object under review.
type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

// AdmissionRequest is what is being admitted.
type AdmissionRequest struct {
	UID       string           `json:"uid"`
	Kind      GroupVersionKind `json:"kind"`
	Namespace string           `json:"namespace,omitempty"`
	Name      string           `json:"name,omitempty"`
	Operation string           `json:"operation"`
	Object    json.RawMessage  `json:"object,omitempty"`
	DryRun    *bool            `json:"dryRun,omitempty"`
}

// Status explains a refusal.
type Status struct {
	Code    int32  `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// AdmissionResponse is the answer: allowed or not, and a patch.
type AdmissionResponse struct {
	UID       string  `json:"uid"`
	Allowed   bool    `json:"allowed"`
	Result    *Status `json:"status,omitempty"`
	Patch     []byte  `json:"patch,omitempty"` // base64 in JSON, as encoding/json writes []byte
	PatchType *string `json:"patchType,omitempty"`
}

// MaxReviewBytes bounds a request body: the API server sends at most 3 MiB (its own request
// limit), and a pod is far smaller (etcd's object limit is 1.5 MiB).
const MaxReviewBytes = 3 << 20

// MaxInFlight bounds the reviews read and decoded at once: each can take a few times its body
// in memory, and the injector's limit is 64 MiB. Later ones wait for a slot (the API server's
// webhook timeout, 10 s, bounds the wait) rather than being refused.
const MaxInFlight = 4

// Handler answers POST /mutate with the current template.
type Handler struct {
	Current func() *Loaded
	Log     *log.Logger
	slots   chan struct{}
	once    sync.Once
}

// Review decides one review; an error means the review itself was unreadable (no uid to
// answer to).
func Review(body []byte, t *Loaded) (*AdmissionReview, error) {
	var in AdmissionReview
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, fmt.Errorf("not an AdmissionReview: %v", err)
	}
	if in.Request == nil || in.Request.UID == "" {
		return nil, fmt.Errorf("not an AdmissionReview: no request or no request.uid")
	}
	apiVersion := in.APIVersion
	if apiVersion == "" {
		apiVersion = "admission.k8s.io/v1"
	}
	out := &AdmissionReview{APIVersion: apiVersion, Kind: "AdmissionReview"}
	resp := &AdmissionResponse{UID: in.Request.UID, Allowed: true}
	out.Response = resp
	req := in.Request
	// Only pods being created get sidecars; the webhook's rules send nothing else, but a
	// broader rule must not make the injector touch other objects.
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != "CREATE" {
		return out, nil
	}
	if t == nil {
		resp.Allowed = false
		resp.Result = &Status{Code: http.StatusServiceUnavailable, Message: "injector: no template loaded"}
		return out, nil
	}
	ops, _, err := Patch(req.Object, &t.Template)
	if err != nil {
		// Refused rather than admitted bare: a pod the injector cannot read would run
		// without its sidecars, which is what failurePolicy Fail is there to prevent.
		resp.Allowed = false
		resp.Result = &Status{Code: http.StatusBadRequest, Message: "injector: " + err.Error()}
		return out, nil
	}
	if len(ops) > 0 {
		patch, err := json.Marshal(ops)
		if err != nil {
			return nil, err
		}
		jsonPatch := "JSONPatch"
		resp.Patch = patch
		resp.PatchType = &jsonPatch
	}
	return out, nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.once.Do(func() { h.slots = make(chan struct{}, MaxInFlight) })
	select {
	case h.slots <- struct{}{}:
		defer func() { <-h.slots }()
	case <-r.Context().Done():
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			http.Error(w, fmt.Sprintf("review over %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the review: "+err.Error(), http.StatusBadRequest)
		return
	}
	t := h.Current()
	out, err := Review(body, t)
	if err != nil {
		// No uid to answer to: an HTTP error, which the API server treats as a failed call
		// (the webhook's failurePolicy decides).
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.Log != nil && out.Response.PatchType != nil {
		h.Log.Printf("injected template %s into a pod (uid %s)", t.Version, out.Response.UID)
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
