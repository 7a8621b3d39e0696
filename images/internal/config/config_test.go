package config

import (
	"strings"
	"testing"
	"time"
)

func TestBadValuesNameTheSetting(t *testing.T) {
	cases := map[string]func(e *Env){
		"PORT":  func(e *Env) { e.Int("PORT", 1, 1, 10) },
		"DRAIN": func(e *Env) { e.Duration("DRAIN", time.Second) },
		"MODE":  func(e *Env) { e.OneOf("MODE", "a", "a", "b") },
		"ADDR":  func(e *Env) { e.Addr("ADDR", "") },
		"FLAG":  func(e *Env) { e.Bool("FLAG", false) },
		"NEED":  func(e *Env) { e.Required("NEED") },
	}
	values := map[string]string{"PORT": "99", "DRAIN": "-1s", "MODE": "c", "ADDR": "nocolon", "FLAG": "maybe"}
	for setting, use := range cases {
		env := FromMap(values)
		use(env)
		if env.Err == nil || !strings.Contains(env.Err.Error(), setting) {
			t.Errorf("%s: error %v does not name the setting", setting, env.Err)
		}
	}
}

func TestGoodValues(t *testing.T) {
	env := FromMap(map[string]string{"PORT": "8", "DRAIN": "250ms", "LIST": "a, b,,c", "ADDR": "127.0.0.1:15001"})
	if env.Int("PORT", 1, 1, 10) != 8 || env.Duration("DRAIN", 0) != 250*time.Millisecond || env.Addr("ADDR", "") != "127.0.0.1:15001" {
		t.Fatal("parsed wrong")
	}
	if got := env.List("LIST"); strings.Join(got, "|") != "a|b|c" {
		t.Fatalf("list %q", got)
	}
	if env.Err != nil {
		t.Fatal(env.Err)
	}
}
