package inject

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

const (
	// AnnotationInject "false" on a pod: leave it alone.
	AnnotationInject = "patternbench.dev/inject"
	// AnnotationInjected is set on every injected pod to the template's version.
	AnnotationInjected = "patternbench.dev/injected"
)

// Op is one RFC 6902 operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// named reads only an item's name; a nil slice of them means the array is absent (or null).
type named struct {
	Name string `json:"name"`
}

type podContainer struct {
	Name         string  `json:"name"`
	Env          []named `json:"env"`
	VolumeMounts []named `json:"volumeMounts"`
}

// pod is the little of a Pod that deciding the patch needs; the patch itself only adds and
// removes, so nothing else of the pod has to be read (or could be lost).
type pod struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		InitContainers []named        `json:"initContainers"`
		Containers     []podContainer `json:"containers"`
		Volumes        []named        `json:"volumes"`
	} `json:"spec"`
}

// Escape makes a JSON Pointer reference token of s (RFC 6901: ~ as ~0, / as ~1).
func Escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// skip says why a pod gets no patch ("" if it gets one).
func skip(p *pod, t *Template) string {
	if p.Metadata.Annotations[AnnotationInject] == "false" {
		return AnnotationInject + "=false"
	}
	if v, ok := p.Metadata.Annotations[AnnotationInjected]; ok {
		return "already injected (" + v + ")"
	}
	present := map[string]bool{}
	for _, c := range p.Spec.InitContainers {
		present[c.Name] = true
	}
	for _, c := range p.Spec.Containers {
		present[c.Name] = true
	}
	for _, c := range t.InitContainers {
		if name, _ := c["name"].(string); present[name] {
			return "already has container " + name
		}
	}
	return ""
}

// Patch returns the operations that inject t into the pod (raw JSON), or none and the reason
// the pod is left alone.
func Patch(raw []byte, t *Template) ([]Op, string, error) {
	var p pod
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, "", fmt.Errorf("not a pod: %v", err)
	}
	if len(p.Spec.Containers) == 0 {
		return nil, "", fmt.Errorf("not a pod: spec.containers is empty")
	}
	if why := skip(&p, t); why != "" {
		return nil, why, nil
	}
	var ops []Op
	// appendAll adds items to the array at path: the whole array if it is absent or null
	// (a pointer into a missing array is an error), else item by item at its end ("-").
	appendAll := func(path string, exists bool, items []Object) bool {
		for _, item := range items {
			if !exists {
				ops = append(ops, Op{Op: "add", Path: path, Value: []Object{item}})
				exists = true
				continue
			}
			ops = append(ops, Op{Op: "add", Path: path + "/-", Value: item})
		}
		return exists
	}
	appendAll("/spec/initContainers", p.Spec.InitContainers != nil, t.InitContainers)
	appendAll("/spec/volumes", p.Spec.Volumes != nil, t.Volumes)
	for i, c := range p.Spec.Containers {
		changes, ok := t.Containers[c.Name]
		if !ok {
			continue
		}
		base := "/spec/containers/" + strconv.Itoa(i)
		env := c.Env
		exists := env != nil
		for _, e := range changes.Env {
			name := e["name"].(string)
			for j := len(env) - 1; j >= 0; j-- {
				if env[j].Name == name {
					ops = append(ops, Op{Op: "remove", Path: base + "/env/" + strconv.Itoa(j)})
					env = append(env[:j:j], env[j+1:]...)
				}
			}
			exists = appendAll(base+"/env", exists, []Object{e})
			env = append(env, named{Name: name})
		}
		appendAll(base+"/volumeMounts", c.VolumeMounts != nil, changes.VolumeMounts)
	}
	if p.Metadata.Annotations == nil {
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{AnnotationInjected: t.Version}})
	} else {
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations/" + Escape(AnnotationInjected), Value: t.Version})
	}
	return ops, "", nil
}
