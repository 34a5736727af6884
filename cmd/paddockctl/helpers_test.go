package main_test

import (
	"os"
	"testing"
)

// mkdirTemp makes the directory the binary is built into, removed by
// TestMain.
func mkdirTemp() (string, error) { return os.MkdirTemp("", "paddockctl") }

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}
