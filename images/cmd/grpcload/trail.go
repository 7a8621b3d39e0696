package main

// trail is records.answer_trail (src/patternbench/load/records.py) for a gRPC answer: the
// entry pod and node, and per call the caller, the callee and the response's Via, so the
// harness's hop and attribution code reads gRPC records as it reads HTTP ones. Per call it
// also keeps the call's connection and, the channel's connections that ended since its last call (measure/longlived.py). The golden test shares its fixture with the Python test.
func trail(answer map[string]any) map[string]any {
	if answer == nil {
		return map[string]any{"entry": nil, "calls": []any{}}
	}
	calls := []any{}
	var walk func(node map[string]any)
	walk = func(node map[string]any) {
		downs, _ := node["downstream"].([]any)
		for _, d := range downs {
			down, ok := d.(map[string]any)
			if !ok {
				continue
			}
			callee, _ := down["answer"].(map[string]any)
			via := str(down["tunnel"])
			if via == "" {
				via = str(down["via"])
			}
			call := map[string]any{"src": []any{node["pod"], node["node"]}, "dst": nil, "via": via}
			if callee != nil {
				call["dst"] = []any{callee["pod"], callee["node"]}
			}
			for _, k := range []string{"conn", "ended_conns"} {
				if v, ok := down[k]; ok {
					call[k] = v
				}
			}
			calls = append(calls, call)
			if callee != nil {
				walk(callee)
			}
		}
	}
	walk(answer)
	return map[string]any{"entry": []any{answer["pod"], answer["node"]}, "calls": calls}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
