// Package inject adds sidecars to pods at admission: a Template says, generically, what to
// add (init containers, volumes, per-container env and volume mounts), Patch turns a pod and
// a template into an RFC 6902 JSON Patch, Handler answers admission.k8s.io/v1
// AdmissionReviews with it. It knows no agent by name: everything comes from the template.
package inject

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Object is one JSON object of the template (a container, a volume, an env var, a mount),
// kept as decoded so that every field the template gives reaches the pod unchanged.
type Object = map[string]any

// Template is what the injector adds to every pod it admits.
type Template struct {
	// Version goes to the pod's patternbench.dev/injected annotation.
	Version string `json:"version"`
	// InitContainers are appended to spec.initContainers (native sidecars carry
	// restartPolicy: Always themselves).
	InitContainers []Object `json:"initContainers"`
	// Volumes are appended to spec.volumes.
	Volumes []Object `json:"volumes"`
	// Containers: changes to the pod's containers, by container name.
	Containers map[string]ContainerChanges `json:"containers"`
}

// ContainerChanges are made to one of the pod's containers.
type ContainerChanges struct {
	// Env is set: an existing variable of the same name is removed, the new one appended.
	Env []Object `json:"env"`
	// VolumeMounts are appended.
	VolumeMounts []Object `json:"volumeMounts"`
}

// Loaded is a parsed template with the digest of the bytes it came from.
type Loaded struct {
	Template
	SHA256 string
}

// ParseTemplate reads a template from JSON; unknown keys and nameless items are errors, so
// a typo never silently injects less than was meant.
func ParseTemplate(data []byte) (*Loaded, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var t Template
	if err := dec.Decode(&t); err != nil {
		return nil, fmt.Errorf("template: %v", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("template: more than one JSON document")
	}
	if t.Version == "" {
		return nil, fmt.Errorf("template: version is required")
	}
	check := func(where string, items []Object) error {
		seen := map[string]bool{}
		for i, item := range items {
			name, ok := item["name"].(string)
			if !ok || name == "" {
				return fmt.Errorf("template: %s[%d] has no name", where, i)
			}
			if seen[name] {
				return fmt.Errorf("template: %s names %q twice", where, name)
			}
			seen[name] = true
		}
		return nil
	}
	if err := check("initContainers", t.InitContainers); err != nil {
		return nil, err
	}
	if err := check("volumes", t.Volumes); err != nil {
		return nil, err
	}
	for name, c := range t.Containers {
		if err := check("containers."+name+".env", c.Env); err != nil {
			return nil, err
		}
		if err := check("containers."+name+".volumeMounts", c.VolumeMounts); err != nil {
			return nil, err
		}
	}
	sum := sha256.Sum256(data)
	return &Loaded{Template: t, SHA256: hex.EncodeToString(sum[:])}, nil
}
