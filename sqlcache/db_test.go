package sqlcache_test

import (
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/memstore"
	"github.com/paddockcache/paddock/sqlcache"
)

func newCache(t *testing.T) *paddock.Cache {
	t.Helper()
	s, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	c, err := paddock.New(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c
}

// Bad arguments and options are errors wrapping ErrInvalidOption, never
// panics. (sql.OpenDB needs no driver connection until used.)
func TestOptionsInvalid(t *testing.T) {
	c := newCache(t)
	db := sql.OpenDB(nil)
	t.Cleanup(func() { db.Close() })
	for name, f := range map[string]func() error{
		"nil db":     func() error { _, err := sqlcache.New(nil, c); return err },
		"nil cache":  func() error { _, err := sqlcache.New(db, nil); return err },
		"nil option": func() error { _, err := sqlcache.New(db, c, nil); return err },
		"nil logger": func() error { _, err := sqlcache.New(db, c, sqlcache.Logger(nil)); return err },
		"no dialect": func() error { _, err := sqlcache.New(db, c, sqlcache.WithOutbox(sqlcache.Outbox{})); return err },
		"bad table": func() error {
			_, err := sqlcache.New(db, c, sqlcache.WithOutbox(sqlcache.Outbox{Table: "x; DROP TABLE y", Dialect: sqlcache.SQLite}))
			return err
		},
		"dotted table": func() error {
			_, err := sqlcache.New(db, c, sqlcache.WithOutbox(sqlcache.Outbox{Table: "s.t", Dialect: sqlcache.Postgres}))
			return err
		},
		"relay no box":  func() error { d, _ := sqlcache.New(db, c); _, err := d.Relay(); return err },
		"create no box": func() error { d, _ := sqlcache.New(db, c); return d.CreateOutbox(t.Context()) },
		"grace":         func() error { return relayErr(t, db, c, sqlcache.Grace(-time.Second)) },
		"interval":      func() error { return relayErr(t, db, c, sqlcache.PollInterval(0)) },
		"batch":         func() error { return relayErr(t, db, c, sqlcache.BatchSize(0)) },
		"claim":         func() error { return relayErr(t, db, c, sqlcache.ClaimTTL(0)) },
		"nil relay opt": func() error { return relayErr(t, db, c, nil) },
	} {
		if err := f(); !errors.Is(err, paddock.ErrInvalidOption) {
			t.Errorf("%s: %v, want an error wrapping ErrInvalidOption", name, err)
		}
	}
	d, err := sqlcache.New(db, c, sqlcache.WithOutbox(sqlcache.Outbox{Dialect: sqlcache.Postgres}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Relay(sqlcache.Grace(0), sqlcache.PollInterval(time.Millisecond), sqlcache.BatchSize(1), sqlcache.ClaimTTL(time.Second)); err != nil {
		t.Fatalf("good relay options: %v", err)
	}
	if d.Cache() != c {
		t.Fatal("Cache() is not the Cache given to New")
	}
}

func relayErr(t *testing.T, db *sql.DB, c *paddock.Cache, o sqlcache.RelayOption) error {
	t.Helper()
	d, err := sqlcache.New(db, c, sqlcache.WithOutbox(sqlcache.Outbox{Dialect: sqlcache.SQLite}))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Relay(o)
	return err
}
