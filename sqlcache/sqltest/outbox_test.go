package sqltest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/sqlcache"
	"github.com/paddockcache/paddock/store"
)

// The child process of TestOutboxCrash is this test binary run again with
// these variables set: TestMain runs crashChild instead of the tests.
const (
	childEnv        = "SQLCACHE_TEST_CRASH_CHILD" // the dialect's name
	childDriverEnv  = "SQLCACHE_TEST_CRASH_DRIVER"
	childDSNEnv     = "SQLCACHE_TEST_CRASH_DSN"
	childRedisEnv   = "SQLCACHE_TEST_CRASH_REDIS" // the server's socket
	childExitAtCall = 3                           // the exit code of a child that died where it should
)

// exitOnInvalidate is a store whose process dies when it is asked to
// invalidate: after its transaction committed, before the store heard.
type exitOnInvalidate struct{ store.Store }

func (exitOnInvalidate) Invalidate(context.Context, store.Invalidation) error {
	os.Exit(childExitAtCall)
	return nil
}

// crashChild commits an update of article 1 with the outbox, on a Cache
// over Redis whose process dies before the invalidation reaches Redis. It
// returns an exit code only if it did not die there.
func crashChild() int {
	dialect := sqlcache.SQLite
	if os.Getenv(childEnv) == sqlcache.Postgres.String() {
		dialect = sqlcache.Postgres
	}
	b := backend{dialect: dialect}
	ctx := context.Background()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		return 1
	}
	db, err := sql.Open(os.Getenv(childDriverEnv), os.Getenv(childDSNEnv))
	if err != nil {
		return fail(err)
	}
	rs, err := redisstore.New(redis.NewClient(&redis.Options{Network: "unix", Addr: os.Getenv(childRedisEnv), ContextTimeoutEnabled: true}))
	if err != nil {
		return fail(err)
	}
	c, err := paddock.New(exitOnInvalidate{rs})
	if err != nil {
		return fail(err)
	}
	d, err := sqlcache.New(db, c, sqlcache.WithOutbox(b.outbox()))
	if err != nil {
		return fail(err)
	}
	err = d.InTx(ctx, nil, func(tx *sqlcache.Tx) error {
		_, err := tx.ExecContext(ctx, "UPDATE articles SET title = 'new' WHERE id = 1")
		tx.InvalidateTags(tag(1))
		return err
	})
	return fail(fmt.Errorf("Commit returned (%v): the store was not asked to invalidate", err))
}

// A process that dies between its commit and its invalidation: the fleet
// (a Cache on the same Redis) keeps serving the old row until a relay, in
// another process, applies the outbox row the commit wrote.
func TestOutboxCrash(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		srv := redistest.Start(t)
		rs, err := redisstore.New(srv.Client(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, b, rs).withOutbox()
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		e.want(1, "old", "before")

		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+b.dialect.String(), childDriverEnv+"="+e.driver,
			childDSNEnv+"="+e.dsn, childRedisEnv+"="+srv.Socket)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != childExitAtCall {
			t.Fatalf("child: %v, want exit code %d\n%s", err, childExitAtCall, out)
		}

		var title string
		if err := e.sql.QueryRow("SELECT title FROM articles WHERE id = 1").Scan(&title); err != nil || title != "new" {
			t.Fatalf("row: %q, %v; want the child's committed write", title, err)
		}
		e.want(1, "old", "after the child died (the gap the outbox closes)")
		if n := e.outboxRows(); n != 1 {
			t.Fatalf("%d outbox rows, want the child's 1", n)
		}
		relay := must(e.db.Relay(sqlcache.Grace(0)))
		if n, err := relay.RunOnce(t.Context()); n != 1 || err != nil {
			t.Fatalf("relay: %d rows, %v; want 1", n, err)
		}
		e.want(1, "new", "after the relay")
		if n := e.outboxRows(); n != 0 {
			t.Fatalf("%d outbox rows left after the relay", n)
		}
	})
}

// writeRows commits n transactions through a Cache whose store is gone, so
// that each leaves its outbox row: transaction i invalidates tag(i).
func (e *env) writeRows(first, n int) {
	e.t.Helper()
	d := newDB(e.t, e.sql, newCache(e.t, deadStore{newCountingStore(e.t)}), sqlcache.WithOutbox(e.b.outbox()))
	for i := first; i < first+n; i++ {
		err := d.InTx(e.t.Context(), nil, func(tx *sqlcache.Tx) error {
			tx.InvalidateTags(tag(i))
			return nil
		})
		if !errors.Is(err, sqlcache.ErrCommitted) {
			e.t.Fatalf("commit %d: %v, want ErrCommitted", i, err)
		}
	}
}

// A commit whose invalidations were applied deletes its outbox row; one
// that invalidates nothing writes none.
func TestOutboxCommitDeletesRow(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		e.exec("INSERT INTO articles (id, title) VALUES (1, 'old')")
		e.want(1, "old", "before")
		for _, invalidate := range []bool{true, false} {
			err := e.db.InTx(t.Context(), nil, func(tx *sqlcache.Tx) error {
				_, err := tx.ExecContext(t.Context(), "UPDATE articles SET title = 'new'")
				if invalidate {
					tx.InvalidateTags(tag(1))
				}
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		e.want(1, "new", "after the commit")
		if n := e.outboxRows(); n != 0 {
			t.Fatalf("%d outbox rows, want 0", n)
		}
		e.writeRows(1, 1) // the same commit with the store gone keeps its row
		if n := e.outboxRows(); n != 1 {
			t.Fatalf("%d outbox rows after a commit the store did not hear, want 1", n)
		}
	})
}

// Two relays at once, each with its own connections and Cache on one
// Redis (two processes of a fleet), apply every row at least once, in
// batches, and empty the table.
func TestOutboxRelaysConcurrent(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		const rows = 60
		e.writeRows(1, rows)
		rs, err := redisstore.New(redistest.Start(t).Client(t, nil))
		if err != nil {
			t.Fatal(err)
		}
		shared := countInvalidations(rs)
		relays := make([]*sqlcache.Relay, 2)
		for i := range relays {
			d := newDB(t, openSQL(t, e.driver, e.dsn), newCache(t, shared), sqlcache.WithOutbox(b.outbox()))
			relays[i] = must(d.Relay(sqlcache.Grace(0), sqlcache.BatchSize(7)))
		}
		start := make(chan struct{})
		counts := make([]int, len(relays))
		errs := make([]error, len(relays))
		var wg sync.WaitGroup
		for i, r := range relays {
			wg.Go(func() {
				<-start
				counts[i], errs[i] = r.RunOnce(t.Context())
			})
		}
		close(start)
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		twice := 0
		for i := range ids(rows) {
			switch n := shared.count(tag(i + 1)); {
			case n == 0:
				t.Errorf("%s never invalidated", tag(i+1))
			case n > 1:
				twice++
			}
		}
		if counts[0]+counts[1] < rows {
			t.Errorf("relays applied %v rows, want at least %d together", counts, rows)
		}
		if n := e.outboxRows(); n != 0 {
			t.Errorf("%d outbox rows left", n)
		}
		t.Logf("relays applied %v rows; %d applied twice", counts, twice)
	})
}

// A relay started after rows piled up (no relay ran) applies them all;
// running, it applies a row written later too. Stopped, it finishes its
// pass: no row it applied is left.
func TestOutboxRelayCatchesUp(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		const rows = 25
		e.writeRows(1, rows)
		var want []string
		for _, i := range ids(rows) {
			want = append(want, tag(i))
		}
		s := newCountingStore(t, want...)
		d := newDB(t, e.sql, newCache(t, s), sqlcache.WithOutbox(b.outbox()))
		relay := must(d.Relay(sqlcache.Grace(0), sqlcache.BatchSize(10), sqlcache.PollInterval(5*time.Millisecond)))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- relay.Run(ctx) }()
		wait := func(what string, seen <-chan struct{}) {
			t.Helper()
			select {
			case <-seen:
			case err := <-done:
				t.Fatalf("Run returned %v before %s", err, what)
			case <-time.After(time.Minute):
				t.Fatalf("%s: not applied after a minute", what)
			}
		}
		wait("the rows left while no relay ran", s.seen)
		late := s.expect(tag(rows + 1))
		e.writeRows(rows+1, 1)
		wait("a row written while the relay runs", late)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v, want context.Canceled", err)
		}
		if n := e.outboxRows(); n != 0 {
			t.Fatalf("%d outbox rows left", n)
		}
	})
}

// Rows younger than the grace period are left to their writer.
func TestOutboxRelayGrace(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		e.writeRows(1, 1)
		if n, err := must(e.db.Relay(sqlcache.Grace(time.Hour))).RunOnce(t.Context()); n != 0 || err != nil {
			t.Fatalf("relay with an hour's grace: %d rows, %v; want none", n, err)
		}
		if n := e.outboxRows(); n != 1 {
			t.Fatalf("%d outbox rows, want the young one kept", n)
		}
		if n, err := must(e.db.Relay(sqlcache.Grace(0))).RunOnce(t.Context()); n != 1 || err != nil {
			t.Fatalf("relay with no grace: %d rows, %v; want 1", n, err)
		}
	})
}

// A row another relay holds is skipped, without waiting for it, and
// applied once it is free: on PostgreSQL a row locked by another
// transaction, until it ends; on SQLite a row claimed by another relay,
// until its claim expires (the relay died).
func TestOutboxRelaySkipsHeldRows(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		e.writeRows(1, 1)
		relay := must(e.db.Relay(sqlcache.Grace(0)))
		var release func()
		if b.dialect == sqlcache.Postgres {
			tx, err := e.sql.BeginTx(t.Context(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec("SELECT id FROM paddock_outbox FOR UPDATE"); err != nil {
				t.Fatal(err)
			}
			release = func() { _ = tx.Rollback() }
		} else {
			e.exec("UPDATE paddock_outbox SET claim = 'other', claimed_until = ?", time.Now().Add(time.Hour).UnixMilli())
			release = func() {
				e.exec("UPDATE paddock_outbox SET claimed_until = ?", time.Now().Add(-time.Second).UnixMilli())
			}
		}
		if n, err := relay.RunOnce(t.Context()); n != 0 || err != nil {
			t.Fatalf("relay while the row is held: %d rows, %v; want none", n, err)
		}
		release()
		if n, err := relay.RunOnce(t.Context()); n != 1 || err != nil {
			t.Fatalf("relay once the row is free: %d rows, %v; want 1", n, err)
		}
	})
}

// A relay whose store does not acknowledge keeps the rows (at least once),
// and gives them back at once: another relay applies them without waiting
// for a claim to expire.
func TestOutboxRelayStoreDown(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		e.writeRows(1, 3)
		down := newDB(t, e.sql, newCache(t, failingStore{newCountingStore(t)}), sqlcache.WithOutbox(b.outbox()))
		if n, err := must(down.Relay(sqlcache.Grace(0))).RunOnce(t.Context()); n != 0 || !errors.Is(err, paddock.ErrStoreUnavailable) {
			t.Fatalf("relay with the store down: %d rows, %v; want none and ErrStoreUnavailable", n, err)
		}
		if n := e.outboxRows(); n != 3 {
			t.Fatalf("%d outbox rows, want the 3 kept", n)
		}
		if n, err := must(e.db.Relay(sqlcache.Grace(0))).RunOnce(t.Context()); n != 3 || err != nil {
			t.Fatalf("relay with the store up: %d rows, %v; want 3", n, err)
		}
	})
}

// A row that cannot be applied (it does not decode, or names a key the
// Cache refuses) is dropped rather than block the rows behind it.
func TestOutboxRelayDropsBadRows(t *testing.T) {
	forEach(t, func(t *testing.T, b backend) {
		e := newEnv(t, b, nil).withOutbox()
		e.exec("INSERT INTO paddock_outbox (id, created_ms, keys, tags) VALUES ('a', 1, 'not json', '[]'), ('b', 2, '[\"nonamespace\"]', '[]')")
		e.writeRows(1, 1)
		if n, err := must(e.db.Relay(sqlcache.Grace(0))).RunOnce(t.Context()); n != 1 || err != nil {
			t.Fatalf("relay: %d rows, %v; want the good one", n, err)
		}
		if n := e.outboxRows(); n != 0 {
			t.Fatalf("%d outbox rows left", n)
		}
	})
}
