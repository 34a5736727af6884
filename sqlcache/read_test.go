package sqlcache_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/sqlcache"
)

func TestNotFound(t *testing.T) {
	if err := sqlcache.NotFound(nil); err != nil {
		t.Fatalf("NotFound(nil) = %v", err)
	}
	err := sqlcache.NotFound(fmt.Errorf("scan article 7: %w", sql.ErrNoRows))
	if !errors.Is(err, paddock.ErrNotFound) || !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("NotFound(no rows) = %v: want ErrNotFound and sql.ErrNoRows", err)
	}
	if again := sqlcache.NotFound(err); again != err {
		t.Fatalf("NotFound twice wrapped again: %v", again)
	}
	other := errors.New("connection refused")
	if err := sqlcache.NotFound(other); err != other {
		t.Fatalf("NotFound(other) = %v, want it unchanged", err)
	}
}
