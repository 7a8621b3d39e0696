package main

import (
	"testing"

	"patternbench.local/images/internal/cmdtest"
)

func TestMain(m *testing.M) { cmdtest.Main(m, main) }

func TestBadConfiguration(t *testing.T) {
	cmdtest.ExpectOneLineNaming(t, "LISTEN", "LISTEN=everywhere")
}
