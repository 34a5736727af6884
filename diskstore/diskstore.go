package diskstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// A Store is a [store.Store] in a SQLite database file. Create one with
// [Open]; it is safe for concurrent use, several Stores (in one process or
// in several) may open the same file, and Close releases it.
type Store struct {
	// rdb serves read-only transactions (deferred BEGIN, several
	// connections: WAL lets readers run beside the writer). wdb and ddb
	// serve write transactions (BEGIN IMMEDIATE, one connection each):
	// wdb commits with synchronous=NORMAL, ddb with synchronous=FULL (see
	// the package doc on durability).
	rdb, wdb, ddb *sql.DB

	clock       func() time.Time
	maxBytes    int64
	maxEntry    int
	maxVersions int64

	// wmu lets one write transaction of this process run at a time, so
	// that the process's writers queue here, in order and without
	// polling, rather than in SQLite's busy handler, which sleeps. Other
	// processes still wait in the busy handler.
	wmu chan struct{}

	closed  atomic.Bool
	corrupt atomic.Uint64
	grants  atomic.Uint64 // leases granted, for the sweep of dead ones

	evictMu   sync.Mutex
	evictions map[string]uint64

	// stmts holds the prepared statements of each database handle.
	stmtMu     sync.Mutex
	stmts      map[*sql.DB]map[string]*sql.Stmt
	unprepared map[string]bool // queries a write ran unprepared (see stmt)
}

var (
	_ store.Store   = (*Store)(nil)
	_ store.Stats   = (*Store)(nil)
	_ store.Batcher = (*Store)(nil)
)

var errClosed = fmt.Errorf("diskstore: %w", store.ErrClosed)

// testHookCommit, when set (by this package's tests only), is called
// inside every write transaction just before it commits, with the name of
// the call ("lookup", "fill", "release", "invalidate").
var testHookCommit func(op string)

// Open opens the database at path, creating it (and its tables) if it
// does not exist, and returns a store on it. The directory must exist.
// SQLite keeps two files beside it while it is open, path-wal and
// path-shm; all three belong to the store. Every process that opens path
// shares its entries, leases and versions. A bad option gives an error
// wrapping [store.ErrInvalidOption].
func Open(path string, opts ...Option) (*Store, error) {
	c := defaultConfig()
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil Option")
		}
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if err := c.finish(); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, invalid("Open: empty path")
	}
	s := &Store{
		clock:       c.clock,
		maxBytes:    c.maxBytes,
		maxEntry:    c.maxEntryBytes,
		maxVersions: c.maxVersions,
		wmu:         make(chan struct{}, 1),
		evictions:   make(map[string]uint64),
		stmts:       make(map[*sql.DB]map[string]*sql.Stmt),
		unprepared:  make(map[string]bool),
	}
	var err error
	open := func(sync string, conns int) *sql.DB {
		if err != nil {
			return nil
		}
		var db *sql.DB
		db, err = sql.Open("sqlite", dsn(path, sync, c.busyTimeout))
		if err != nil {
			return nil
		}
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		return db
	}
	s.rdb = open("NORMAL", max(2, min(runtime.GOMAXPROCS(0), 8)))
	s.wdb = open("NORMAL", 1)
	s.ddb = open("FULL", 1)
	for _, db := range []*sql.DB{s.rdb, s.wdb, s.ddb} {
		s.stmts[db] = make(map[string]*sql.Stmt)
	}
	if err == nil {
		err = s.write(context.Background(), true, "open", func(w *wtx) error { return create(w.ctx, w.tx) })
	}
	if err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("diskstore: open %s: %w", path, err)
	}
	return s, nil
}

// dsn is the driver's name for path with the connection's settings: WAL,
// the busy timeout, the synchronous level, and BEGIN IMMEDIATE for
// transactions that are not read-only, so that a writer takes the write
// lock when it begins and never fails to upgrade a read lock midway.
func dsn(path, sync string, busy time.Duration) string {
	q := url.Values{}
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", sync)
	q.Set("_busy_timeout", strconv.FormatInt(max(busy.Milliseconds(), 1), 10))
	q.Set("_txlock", "immediate")
	return "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
}

func (s *Store) closeDBs() {
	for _, db := range []*sql.DB{s.rdb, s.wdb, s.ddb} {
		if db != nil {
			_ = db.Close()
		}
	}
}

// Close closes the store's connections. Every call after the first, and
// every other method after Close, returns an error wrapping
// [store.ErrClosed]. The database stays on disk for the next Open.
func (s *Store) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return errClosed
	}
	s.closeDBs()
	return nil
}

// wtx is one write transaction: its meta row is read at the start and
// written back at the end if a step changed it.
type wtx struct {
	ctx context.Context
	s   *Store
	db  *sql.DB
	tx  *sql.Tx
	m   meta
	m0  meta
}

// row runs a query of one row in the transaction, prepared once per
// connection.
func (w *wtx) row(query string, args ...any) *sql.Row {
	st := w.s.stmt(w.db, query)
	if st == nil {
		return w.tx.QueryRowContext(w.ctx, query, args...) // and its error
	}
	return w.tx.StmtContext(w.ctx, st).QueryRowContext(w.ctx, args...)
}

// exec runs a statement in the transaction, prepared once per connection.
func (w *wtx) exec(query string, args ...any) (sql.Result, error) {
	st := w.s.stmt(w.db, query)
	if st == nil {
		return w.tx.ExecContext(w.ctx, query, args...) // and its error
	}
	return w.tx.StmtContext(w.ctx, st).ExecContext(w.ctx, args...)
}

// reader runs the queries of a read outside any transaction: each query
// is one snapshot of the database.
type reader struct {
	ctx context.Context
	s   *Store
}

func (r reader) row(query string, args ...any) *sql.Row {
	st := r.s.stmt(r.s.rdb, query)
	if st == nil {
		return r.s.rdb.QueryRowContext(r.ctx, query, args...) // and its error
	}
	return st.QueryRowContext(r.ctx, args...)
}

// stmt returns query prepared on db, or nil. A read prepares what it
// lacks at once. A write transaction holds its handle's one connection,
// so it runs the query unprepared and leaves it to prepare after the
// transaction (see prepareLater).
func (s *Store) stmt(db *sql.DB, query string) *sql.Stmt {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	st := s.stmts[db][query]
	if st != nil {
		return st
	}
	if db != s.rdb {
		s.unprepared[query] = true
		return nil
	}
	st, err := db.Prepare(query)
	if err != nil {
		return nil
	}
	s.stmts[db][query] = st
	return st
}

// prepareLater prepares on db the queries a write transaction ran
// unprepared. The caller holds wmu, and no transaction holds db's
// connection.
func (s *Store) prepareLater(db *sql.DB) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	for q := range s.unprepared {
		if st, err := db.Prepare(q); err == nil {
			s.stmts[db][q] = st
		}
		delete(s.unprepared, q)
	}
}

// write runs f in a write transaction, durable (synchronous=FULL) or
// not, and commits it if f returns nil. op names the call for the tests'
// commit hook.
func (s *Store) write(ctx context.Context, durable bool, op string, f func(w *wtx) error) (err error) {
	select {
	case s.wmu <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.wmu }()
	db := s.wdb
	if durable {
		db = s.ddb
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
		s.prepareLater(db)
	}()
	w := &wtx{ctx: ctx, s: s, db: db, tx: tx}
	if op != "open" && op != "release" {
		if w.m, err = readMeta(w); err != nil {
			return err
		}
		w.m0 = w.m
	}
	if err = f(w); err != nil {
		return err
	}
	if w.m != w.m0 {
		if err = writeMeta(w, w.m); err != nil {
			return err
		}
	}
	if h := testHookCommit; h != nil {
		h(op)
	}
	return tx.Commit()
}

// fail wraps a database error of a call, or turns it into ErrClosed if
// the store was closed meanwhile.
func (s *Store) fail(op string, err error) error {
	if s.closed.Load() {
		return errClosed
	}
	return fmt.Errorf("diskstore: %s: %w", op, err)
}

func ticket(m meta) store.Ticket { return store.Ticket{Epoch: uint64(m.epoch), Seq: uint64(m.seq)} }

// querier runs the queries of a read, in a write transaction or not.
type querier interface {
	row(query string, args ...any) *sql.Row
}

// row is what a lookup reads of a key in one statement.
type row struct {
	env   []byte
	size  int64
	found bool
	token uint64
	until int64
	lease bool
}

// readRow reads meta and key's entry and lease in one statement, so
// that a read outside a transaction sees them at one instant.
func readRow(q querier, key string) (meta, row, error) {
	var (
		m     meta
		r     row
		env   []byte
		size  sql.NullInt64
		token sql.NullInt64
		until sql.NullInt64
	)
	err := q.row(`SELECT `+metaCols+`, e.env, e.size, l.token, l.until FROM meta m
		LEFT JOIN entries e ON e.key = ?1 LEFT JOIN leases l ON l.key = ?1 WHERE m.id = 1`, []byte(key)).
		Scan(append(m.dest(), &env, &size, &token, &until)...)
	if err != nil {
		return m, r, err
	}
	r.env, r.size, r.found = env, size.Int64, size.Valid
	r.token, r.until, r.lease = uint64(token.Int64), until.Int64, token.Valid
	return m, r, nil
}

// decodeEntry decodes env, reporting an entry of another epoch as nil and
// bytes that do not decode as corrupt.
func decodeEntry(env []byte, epoch int64) (e *store.Entry, corrupt bool) {
	e = new(store.Entry)
	if err := e.UnmarshalBinary(env); err != nil {
		return nil, true
	}
	if e.Ticket.Epoch != uint64(epoch) {
		return nil, false
	}
	if e.Negative {
		e.Value = nil
	}
	return e, false
}

// tagVersions returns the soft and hard versions of tag: its row's, or
// the floors, read in the same statement. (A read outside a transaction
// reads a tag after the entry, maybe after an overflow of the versions
// cleared the table and raised the floors: the floors of the entry's
// instant would then stand for versions that were higher.)
func tagVersions(q querier, tag string) (soft, hard int64, err error) {
	err = q.row(`SELECT max(coalesce(t.soft, 0), m.sfloor), max(coalesce(t.hard, 0), m.hfloor)
		FROM meta m LEFT JOIN tver t ON t.tag = ? WHERE m.id = 1`, []byte(tag)).Scan(&soft, &hard)
	return soft, hard, err
}

// tagState reports whether a tag of e was hard- or soft-invalidated after
// e's ticket.
func tagState(q querier, e *store.Entry) (hard, soft bool, err error) {
	for _, tag := range e.Tags {
		sv, hv, err := tagVersions(q, tag)
		if err != nil {
			return false, false, err
		}
		if uint64(hv) > e.Ticket.Seq {
			return true, true, nil
		}
		if uint64(sv) > e.Ticket.Seq {
			soft = true
		}
	}
	return false, soft, nil
}

// Lookup implements [store.Store]. It judges the key's entry by the
// store's clock, as memstore does:
//
//   - no entry, an entry of another epoch or that fails to decode, an entry
//     with a tag hard-invalidated after its ticket, or past its last window:
//     State Miss and no Entry (the dead entry is dropped; bytes that fail to
//     decode are counted in [Store.Corrupt] and reported by Corrupt);
//   - before FreshUntil and not soft-invalidated: Fresh;
//   - soft-invalidated (key or tag) or past FreshUntil, before StaleUntil:
//     Stale;
//   - past StaleUntil, before ErrorUntil: State Miss with the Entry, for
//     stale-if-error.
//
// In every case but a Fresh entry not due for refresh (req.Refresh, or
// req.Early and [store.Entry.DueEarly]), a caller with a non-zero req.Lease
// is granted the key's lease if no live lease of another token holds it
// (its own is renewed), and is told Held otherwise, whichever process
// holds it. A non-zero req.Lease needs a positive req.LeaseTTL.
//
// A lookup that changes nothing (a hit, a lease held elsewhere, a
// read-only miss) is one read-only transaction, which runs beside other
// readers and the writer. One that grants a lease or drops an entry
// decides again in a write transaction.
func (s *Store) Lookup(ctx context.Context, key string, req store.LookupRequest) (store.Lookup, error) {
	if s.closed.Load() {
		return store.Lookup{}, errClosed
	}
	if req.Lease != 0 && req.LeaseTTL <= 0 {
		return store.Lookup{}, invalid("Lookup: lease TTL %v is not positive", req.LeaseTTL)
	}
	res, needWrite, err := s.lookup(reader{ctx, s}, nil, key, req)
	if err == nil && needWrite {
		err = s.write(ctx, false, "lookup", func(w *wtx) error {
			var err error
			res, _, err = s.lookup(w, w, key, req)
			return err
		})
	}
	if err != nil {
		return store.Lookup{}, s.fail("Lookup", err)
	}
	return res, nil
}

// lookup decides a Lookup of key: in a write transaction w (q is w), or
// (w nil) with q outside any transaction, in which case it changes
// nothing and reports whether it needs a write transaction instead.
func (s *Store) lookup(q querier, w *wtx, key string, req store.LookupRequest) (res store.Lookup, needWrite bool, err error) {
	now := s.clock()
	m, r, err := readRow(q, key)
	if err != nil {
		return res, false, err
	}
	res = store.Lookup{Now: now, Ticket: ticket(m)}
	var e *store.Entry
	if r.found {
		var corrupt bool
		e, corrupt = decodeEntry(r.env, m.epoch)
		if e == nil {
			// Bytes that are corrupt or of another epoch.
			if w == nil {
				return res, true, nil
			}
			if corrupt {
				s.corrupt.Add(1)
			}
			res.Corrupt = corrupt
			if err := w.deleteEntry(key, r.size); err != nil {
				return res, false, err
			}
		}
	}
	wantLease := true
	if e != nil {
		hard, soft, err := tagState(q, e)
		if err != nil {
			return res, false, err
		}
		switch {
		case hard || !now.Before(e.Expires()):
			if w == nil {
				return res, true, nil
			}
			if err := w.deleteEntry(key, r.size); err != nil {
				return res, false, err
			}
		case now.Before(e.FreshUntil) && !soft:
			res.Entry, res.State = e, store.StateFresh
			wantLease = req.Refresh || req.Early && e.DueEarly(now)
		case now.Before(e.StaleUntil):
			res.Entry, res.State = e, store.StateStale
		default: // inside the error window
			res.Entry, res.State = e, store.StateMiss
		}
	}
	live := r.lease && now.UnixNano() < r.until
	switch {
	case live && r.token != req.Lease:
		res.Held = true
	case wantLease && req.Lease != 0:
		if w == nil {
			return res, true, nil
		}
		if err := s.grant(w, key, req.Lease, now.Add(req.LeaseTTL), now); err != nil {
			return res, false, err
		}
		res.Lease = true
	}
	return res, false, nil
}

// sweepEvery is how many grants a process makes between sweeps of the
// leases that expired without a fill or release (their holders died).
const sweepEvery = 1024

func (s *Store) grant(w *wtx, key string, token uint64, until, now time.Time) error {
	if s.grants.Add(1)%sweepEvery == 0 {
		if _, err := w.exec(`DELETE FROM leases WHERE until <= ?`, now.UnixNano()); err != nil {
			return err
		}
	}
	_, err := w.exec(`INSERT OR REPLACE INTO leases (key, token, until) VALUES (?, ?, ?)`,
		[]byte(key), int64(token), until.UnixNano())
	return err
}

func (w *wtx) release(key string, token uint64) error {
	_, err := w.exec(`DELETE FROM leases WHERE key = ? AND token = ?`, []byte(key), int64(token))
	return err
}

// deleteEntry drops key's entry of size bytes (from the row read in this
// transaction).
func (w *wtx) deleteEntry(key string, size int64) error {
	res, err := w.exec(`DELETE FROM entries WHERE key = ?`, []byte(key))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n > 0 {
		w.m.bytes -= size
	}
	return nil
}

// dropEntry drops key's entry, whatever its size.
func (w *wtx) dropEntry(key string) error {
	var size int64
	err := w.row(`DELETE FROM entries WHERE key = ? RETURNING size`, []byte(key)).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	w.m.bytes -= size
	return err
}

// readEntry reads key's entry bytes and size in the write transaction.
func (w *wtx) readEntry(key string) (env []byte, size int64, found bool, err error) {
	err = w.row(`SELECT env, size FROM entries WHERE key = ?`, []byte(key)).Scan(&env, &size)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, false, nil
	}
	return env, size, err == nil, err
}

// keyVersion returns key's version.
func (w *wtx) keyVersion(key string) (int64, error) {
	var v int64
	err := w.row(`SELECT v FROM kver WHERE key = ?`, []byte(key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		err = nil
	}
	return max(v, w.m.kfloor), err
}

// setKeyVersion raises key's version to s. When the table would hold
// more than maxVersions keys, it forgets them all and keeps their maximum
// as the floor instead.
func (w *wtx) setKeyVersion(key string, s, maxVersions int64) error {
	res, err := w.exec(`UPDATE kver SET v = max(v, ?) WHERE key = ?`, s, []byte(key))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if w.m.kcount >= maxVersions {
			w.m.kfloor = max(w.m.kfloor, w.m.ktop, s)
			w.m.kcount = 0
			_, err := w.exec(`DELETE FROM kver`)
			return err
		}
		if _, err := w.exec(`INSERT INTO kver (key, v) VALUES (?, ?)`, []byte(key), s); err != nil {
			return err
		}
		w.m.kcount++
	}
	w.m.ktop = max(w.m.ktop, s)
	return nil
}

// setTagVersion raises tag's soft version (and its hard one if hard) to
// s, bounded as setKeyVersion is. An overflow raises the hard floor only
// to the largest hard version, so that soft invalidations never make
// entries read as hard-invalidated.
func (w *wtx) setTagVersion(tag string, s int64, hard bool, maxVersions int64) error {
	h := int64(0)
	if hard {
		h = s
	}
	res, err := w.exec(`UPDATE tver SET soft = max(soft, ?1), hard = max(hard, ?2) WHERE tag = ?3`,
		s, h, []byte(tag))
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if w.m.tcount >= maxVersions {
			w.m.sfloor = max(w.m.sfloor, w.m.stop, s)
			w.m.hfloor = max(w.m.hfloor, w.m.htop, h)
			w.m.tcount = 0
			_, err := w.exec(`DELETE FROM tver`)
			return err
		}
		if _, err := w.exec(`INSERT INTO tver (tag, soft, hard) VALUES (?, ?, ?)`, []byte(tag), s, h); err != nil {
			return err
		}
		w.m.tcount++
	}
	w.m.stop = max(w.m.stop, s)
	w.m.htop = max(w.m.htop, h)
	return nil
}

// Fill implements [store.Store], with memstore's rules. It refuses
// (false, nil) a fill whose ticket is of another epoch, older than the
// key's version or the version of any of f.Tags, or newer than any ticket
// the store has issued; a refused Set fill also drops the key's entry
// unless it is of another epoch than the Set's ticket. Otherwise it
// stores [store.NewEntry] with the fill's ticket, or for a Set fill with a
// new ticket s = ++seq, which also becomes the key's version. An accepted
// fill whose entry would already be past its last window stores nothing
// and drops the key's entry (a Set still advances the version). The check
// and the write are one transaction: no invalidation, from any process,
// falls between them.
//
// An entry larger than MaxEntryBytes is not stored, and Fill returns an
// error wrapping [store.ErrTooLarge]; a Set fill then still drops the
// key's entry and advances its version, as an invalidation of the key
// would. A negative fill with a value is an error wrapping
// [store.ErrInvalidOption]. Whatever the outcome, the lease f.Lease on key
// is released if it is still held by that token.
//
// A Set fill commits durably (see the package doc); a plain one does not
// need to.
func (s *Store) Fill(ctx context.Context, key string, f *store.Fill) (accepted bool, err error) {
	if s.closed.Load() {
		return false, errClosed
	}
	if f == nil {
		return false, invalid("Fill: nil *Fill")
	}
	if f.Negative && len(f.Value) > 0 {
		return false, invalid("Fill(%q): a negative fill has a value", key)
	}
	var fillErr error
	err = s.write(ctx, f.Set, "fill", func(w *wtx) error {
		var err error
		accepted, fillErr, err = s.fill(w, key, f)
		return err
	})
	if err != nil {
		return false, s.fail("Fill", err)
	}
	return accepted, fillErr
}

// fill does a Fill of key in the write transaction w. err is a database
// error (the transaction is rolled back); fillErr an error of this fill
// alone (too large), after which the transaction still commits.
func (s *Store) fill(w *wtx, key string, f *store.Fill) (accepted bool, fillErr, err error) {
	if f.Lease != 0 {
		if err := w.release(key, f.Lease); err != nil {
			return false, nil, err
		}
	}
	ok, err := s.admits(w, key, f)
	if err != nil || !ok {
		if err == nil && f.Set && !hooks.SetKeepsOld.Load() {
			err = s.dropPredating(w, key, f.Ticket)
		}
		return false, nil, err
	}
	now := s.clock()
	t := f.Ticket
	if f.Set {
		w.m.seq++
		t.Seq = uint64(w.m.seq)
		if err := w.setKeyVersion(key, w.m.seq, s.maxVersions); err != nil {
			return false, nil, err
		}
	}
	e := store.NewEntry(f, t, now)
	if !now.Before(e.Expires()) {
		return true, nil, w.dropEntry(key)
	}
	env, err := e.MarshalBinary()
	if err == nil && len(env) > s.maxEntry {
		err = fmt.Errorf("entry of %d bytes, more than MaxEntryBytes %d", len(env), s.maxEntry)
	}
	if err != nil {
		fillErr = fmt.Errorf("diskstore: Fill(%q): %w: %w", key, store.ErrTooLarge, err)
		if f.Set {
			// A Set that cannot store its entry still replaces the key's:
			// it follows a write to the source of truth, so the old entry
			// goes, and the version advanced above, as for an
			// invalidation of the key.
			return false, fillErr, w.dropEntry(key)
		}
		return false, fillErr, nil
	}
	if err := s.put(w, key, env); err != nil {
		return false, nil, err
	}
	return true, nil, nil
}

// admits reports whether fill f of key passes the fence in w.
//
// A ticket beyond the current seq was not issued by this store (seq only
// grows); it is refused too, since its entry would outrank invalidations
// still to come and escape the read-side tag check.
func (s *Store) admits(w *wtx, key string, f *store.Fill) (bool, error) {
	if f.Ticket.Epoch != uint64(w.m.epoch) || f.Ticket.Seq > uint64(w.m.seq) {
		return false, nil
	}
	kv, err := w.keyVersion(key)
	if err != nil || uint64(kv) > f.Ticket.Seq {
		return false, err
	}
	for _, tag := range f.Tags {
		sv, _, err := tagVersions(w, tag)
		if err != nil || uint64(sv) > f.Ticket.Seq {
			return false, err
		}
	}
	return true, nil
}

// dropPredating drops key's entry after a Set with ticket t was refused,
// as memstore does (see its dropPredating): every entry of t's epoch
// goes, since only the ticket of the load that wrote an entry could tell
// whether it began after t, and an entry written by a Set carries the
// Set's own sequence number instead.
func (s *Store) dropPredating(w *wtx, key string, t store.Ticket) error {
	env, size, found, err := w.readEntry(key)
	if err != nil || !found {
		return err
	}
	if e, _ := decodeEntry(env, w.m.epoch); e != nil && e.Ticket.Epoch != t.Epoch {
		return nil
	}
	return w.deleteEntry(key, size)
}

// put writes env under key, replacing its entry (the new row is the
// newest for eviction), and evicts the oldest entries while the entries
// take more than MaxBytes.
func (s *Store) put(w *wtx, key string, env []byte) error {
	size := int64(len(env) + len(key))
	if err := w.dropEntry(key); err != nil {
		return err
	}
	if _, err := w.exec(`INSERT INTO entries (key, env, size) VALUES (?, ?, ?)`,
		[]byte(key), env, size); err != nil {
		return err
	}
	w.m.bytes += size
	return s.evict(w)
}

// evictBatch is how many of the oldest entries an eviction reads at once.
const evictBatch = 32

func (s *Store) evict(w *wtx) error {
	for w.m.bytes > s.maxBytes {
		rows, err := w.tx.QueryContext(w.ctx, `SELECT rowid, key, size FROM entries ORDER BY rowid LIMIT ?`, evictBatch)
		if err != nil {
			return err
		}
		type victim struct {
			id   int64
			key  []byte
			size int64
		}
		var vs []victim
		for rows.Next() {
			var v victim
			if err := rows.Scan(&v.id, &v.key, &v.size); err != nil {
				rows.Close()
				return err
			}
			vs = append(vs, v)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(vs) == 0 {
			w.m.bytes = 0 // the count drifted (a database edited by hand)
			return nil
		}
		for _, v := range vs {
			if w.m.bytes <= s.maxBytes {
				break
			}
			if _, err := w.exec(`DELETE FROM entries WHERE rowid = ?`, v.id); err != nil {
				return err
			}
			w.m.bytes -= v.size
			s.evicted(string(v.key))
		}
	}
	return nil
}

// Release implements [store.Store]: it drops key's lease if token holds
// it, in whichever process it was granted. Calls are synchronous and
// never arrive late, so a released token needs no remembering.
func (s *Store) Release(ctx context.Context, key string, token uint64) error {
	if s.closed.Load() {
		return errClosed
	}
	err := s.write(ctx, false, "release", func(w *wtx) error { return w.release(key, token) })
	if err != nil {
		return s.fail("Release", err)
	}
	return nil
}

// Invalidate implements [store.Store]. In one durable transaction (see
// the package doc) it takes s = ++seq and sets each key's version and
// each tag's version to s (and the tag's hard version, unless inv.Soft).
// A hard invalidation drops the keys' entries; a soft one moves their
// FreshUntil to now. Either drops the leases of inv.Keys, whichever
// process holds them (a load that holds one can no longer fill), so that
// the next lookup asking for the lease is granted it; inv.Tags leave
// leases alone. It never scans entries: an entry's tags are checked
// against the tag versions when it is read. Once it returns, every
// process that opens the database sees it. An empty Invalidation does
// nothing.
func (s *Store) Invalidate(ctx context.Context, inv store.Invalidation) error {
	if s.closed.Load() {
		return errClosed
	}
	if len(inv.Keys) == 0 && len(inv.Tags) == 0 {
		return nil
	}
	err := s.write(ctx, true, "invalidate", func(w *wtx) error { return s.invalidate(w, inv) })
	if err != nil {
		return s.fail("Invalidate", err)
	}
	return nil
}

func (s *Store) invalidate(w *wtx, inv store.Invalidation) error {
	w.m.seq++
	seq := w.m.seq
	now := s.clock()
	breakLeases := !hooks.LeaseOutlivesInvalidation.Load()
	for _, key := range inv.Keys {
		if err := w.setKeyVersion(key, seq, s.maxVersions); err != nil {
			return err
		}
		if breakLeases {
			if _, err := w.exec(`DELETE FROM leases WHERE key = ?`, []byte(key)); err != nil {
				return err
			}
		}
		var err error
		if inv.Soft {
			err = s.soften(w, key, now)
		} else {
			err = w.dropEntry(key)
		}
		if err != nil {
			return err
		}
	}
	for _, tag := range inv.Tags {
		if err := w.setTagVersion(tag, seq, !inv.Soft, s.maxVersions); err != nil {
			return err
		}
	}
	return nil
}

// soften makes key's entry stale from now on, keeping it until its
// StaleUntil. It keeps the entry's place in the eviction order.
func (s *Store) soften(w *wtx, key string, now time.Time) error {
	env, size, found, err := w.readEntry(key)
	if err != nil || !found {
		return err
	}
	e, _ := decodeEntry(env, w.m.epoch)
	if e == nil || !now.Before(e.Expires()) {
		return w.deleteEntry(key, size)
	}
	if !now.Before(e.FreshUntil) {
		return nil
	}
	e.FreshUntil = now
	if env, err = e.MarshalBinary(); err != nil {
		return w.deleteEntry(key, size)
	}
	n := int64(len(env) + len(key))
	if _, err := w.exec(`UPDATE entries SET env = ?, size = ? WHERE key = ?`, env, n, []byte(key)); err != nil {
		return err
	}
	w.m.bytes += n - size
	return nil
}

// Evictions returns, per namespace (the part of a key before its first
// ':', or "" for keys without one), how many entries this Store evicted
// for space. Each process counts its own evictions; invalidations,
// expired entries and replaced entries are not evictions. It implements
// [store.Stats]; the map is the caller's.
func (s *Store) Evictions() map[string]uint64 {
	s.evictMu.Lock()
	defer s.evictMu.Unlock()
	return maps.Clone(s.evictions)
}

func (s *Store) evicted(key string) {
	ns, _, ok := strings.Cut(key, ":")
	if !ok {
		ns = ""
	}
	s.evictMu.Lock()
	s.evictions[ns]++
	s.evictMu.Unlock()
}

// Corrupt returns how many entries this Store found that failed to decode
// (bytes of another format, or damaged) and dropped as misses.
func (s *Store) Corrupt() uint64 { return s.corrupt.Load() }

// flush makes the database lose everything, as a deleted file would: its
// entries, leases and versions, and its epoch, so that tickets and
// entries from before are never trusted again. The conformance suite
// uses it.
func (s *Store) flush(ctx context.Context) error {
	return s.write(ctx, true, "flush", func(w *wtx) error {
		for _, t := range []string{"entries", "leases", "kver", "tver"} {
			if _, err := w.tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
				return err
			}
		}
		w.m = meta{epoch: newEpoch(w.m.epoch)}
		return nil
	})
}
