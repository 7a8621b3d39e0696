// Package config reads settings from the environment and flags, turning every bad value
// into one clear line that names the setting, so a misconfigured pod says why it exits.
package config

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Error names the setting that is wrong.
type Error struct {
	Setting string
	Problem string
}

func (e *Error) Error() string { return fmt.Sprintf("bad setting %s: %s", e.Setting, e.Problem) }

// Fail prints the error as one line and exits 2.
func Fail(program string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", program, err)
	os.Exit(2)
}

// Env reads environment variables with defaults, collecting the first error.
type Env struct {
	Lookup func(string) (string, bool)
	Err    error
}

// FromOS reads the process environment.
func FromOS() *Env { return &Env{Lookup: os.LookupEnv} }

// FromMap reads a map, for tests.
func FromMap(m map[string]string) *Env {
	return &Env{Lookup: func(k string) (string, bool) { v, ok := m[k]; return v, ok }}
}

func (e *Env) fail(setting, problem string) {
	if e.Err == nil {
		e.Err = &Error{Setting: setting, Problem: problem}
	}
}

// String returns the value or def.
func (e *Env) String(name, def string) string {
	if v, ok := e.Lookup(name); ok && v != "" {
		return v
	}
	return def
}

// Required returns the value or records an error.
func (e *Env) Required(name string) string {
	v := e.String(name, "")
	if v == "" {
		e.fail(name, "is required")
	}
	return v
}

// Int parses an integer within [min, max].
func (e *Env) Int(name string, def, min, max int) int {
	raw := e.String(name, "")
	if raw == "" {
		return def
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < min || n > max {
		e.fail(name, fmt.Sprintf("%q is not an integer in [%d, %d]", raw, min, max))
		return def
	}
	return n
}

// Duration parses a Go duration (e.g. 5s, 250ms) that must not be negative.
func (e *Env) Duration(name string, def time.Duration) time.Duration {
	raw := e.String(name, "")
	if raw == "" {
		return def
	}
	d, err := time.ParseDuration(raw)
	if err != nil || d < 0 {
		e.fail(name, fmt.Sprintf("%q is not a non-negative duration like 5s", raw))
		return def
	}
	return d
}

// Bool parses true/false.
func (e *Env) Bool(name string, def bool) bool {
	raw := e.String(name, "")
	if raw == "" {
		return def
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		e.fail(name, fmt.Sprintf("%q is not true or false", raw))
		return def
	}
	return b
}

// List splits a comma-separated list, dropping empty items.
func (e *Env) List(name string) []string {
	var out []string
	for _, item := range strings.Split(e.String(name, ""), ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Addr parses host:port (host may be empty for "all addresses").
func (e *Env) Addr(name, def string) string {
	raw := e.String(name, def)
	if raw == "" {
		return raw
	}
	if err := CheckAddr(raw); err != nil {
		e.fail(name, err.Error())
	}
	return raw
}

// OneOf checks the value is one of the choices.
func (e *Env) OneOf(name, def string, choices ...string) string {
	v := e.String(name, def)
	for _, c := range choices {
		if v == c {
			return v
		}
	}
	e.fail(name, fmt.Sprintf("%q is not one of %s", v, strings.Join(choices, ", ")))
	return def
}

// CheckAddr validates host:port.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q has a bad port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has a bad host", addr)
	}
	return nil
}

// VersionRequested prints "<program> <version>" and reports true when the command line
// asks for the version (--version), so every binary answers it the same way.
func VersionRequested(program, version string) bool {
	if len(os.Args) > 1 && (os.Args[1] == "--version" || os.Args[1] == "-v") {
		fmt.Println(program, version)
		return true
	}
	return false
}
