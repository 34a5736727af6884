package pgtest_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paddockcache/paddock/internal/pgtest"
)

// A server starts, answers on its socket, gives each CreateDatabase a new
// database, and leaves nothing behind once stopped.
func TestStartStop(t *testing.T) {
	s := pgtest.Start(t)
	if _, err := os.Stat(filepath.Join(s.Dir, ".s.PGSQL.5432")); err != nil {
		t.Fatalf("no socket: %v\n%s", err, s.Log())
	}
	a, b := s.CreateDatabase(t), s.CreateDatabase(t)
	if a == b {
		t.Fatalf("two CreateDatabase calls gave one DSN: %s", a)
	}
	s.Stop()
	s.Stop() // twice: nothing
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("directory left after Stop: %v", err)
	}
}
