package pgtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStartStop(t *testing.T) {
	Require(t)
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.Dir, ".s.PGSQL.5432")); err != nil {
		t.Errorf("no socket once Start returned: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("the directory is left after Stop: %v", err)
	}
	if err := s.Stop(); err != nil {
		t.Errorf("a second Stop: %v", err)
	}
}
