package sqlcache

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A Dialect is the SQL dialect of the database that holds an outbox: its
// placeholders, its clock and how relays share the table.
type Dialect int

const (
	// Postgres is PostgreSQL (and databases that speak its dialect, with
	// FOR UPDATE SKIP LOCKED). Relays lock the rows they apply, skipping
	// the rows other relays hold.
	Postgres Dialect = iota + 1
	// SQLite is SQLite. Relays claim rows with an UPDATE (SQLite runs one
	// writer at a time) for the relay's claim time; open the database with
	// a busy timeout (modernc.org/sqlite: _pragma=busy_timeout(5000)) so
	// that concurrent writers wait instead of failing.
	SQLite
)

// String returns the dialect's name.
func (d Dialect) String() string {
	switch d {
	case Postgres:
		return "Postgres"
	case SQLite:
		return "SQLite"
	}
	return "Dialect(" + strconv.Itoa(int(d)) + ")"
}

// DefaultOutboxTable is the table an [Outbox] with no Table uses.
const DefaultOutboxTable = "paddock_outbox"

// An Outbox describes the table where commits write their invalidations
// (see [WithOutbox]). The table has one row per commit that invalidated:
//
//	id            text primary key   -- random, chosen by the writer
//	created_ms    bigint not null    -- the database's clock, Unix ms
//	keys, tags    text not null      -- JSON arrays of strings
//	claim         text               -- SQLite: the relay that claimed it
//	claimed_until bigint             -- SQLite: until when, Unix ms
//
// with an index on created_ms. [DB.CreateOutbox] creates both.
type Outbox struct {
	// Table is the table's name: letters, digits and underscores, not
	// starting with a digit (a schema comes from the connection's search
	// path). Default: [DefaultOutboxTable].
	Table string
	// Dialect is the database's dialect. It has no default.
	Dialect Dialect
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// outbox is a validated Outbox with its statements.
type outbox struct {
	Outbox
	now string // SQL expression: the database's clock in Unix ms
}

func newOutbox(o Outbox) (*outbox, error) {
	if o.Table == "" {
		o.Table = DefaultOutboxTable
	}
	if !identifier.MatchString(o.Table) {
		return nil, invalid("Outbox: table name %q is not a plain identifier", o.Table)
	}
	ob := &outbox{Outbox: o}
	switch o.Dialect {
	case Postgres:
		ob.now = "(extract(epoch from clock_timestamp()) * 1000)::bigint"
	case SQLite:
		ob.now = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
	default:
		return nil, invalid("Outbox: unknown dialect %v", o.Dialect)
	}
	return ob, nil
}

// p returns the i-th placeholder (from 1).
func (o *outbox) p(i int) string {
	if o.Dialect == Postgres {
		return "$" + strconv.Itoa(i)
	}
	return "?"
}

// placeholders returns n placeholders from the i-th, comma-separated.
func (o *outbox) placeholders(i, n int) string {
	ps := make([]string, n)
	for j := range ps {
		ps[j] = o.p(i + j)
	}
	return strings.Join(ps, ", ")
}

// ddl returns the statements that create the table and its index.
func (o *outbox) ddl() []string {
	text, big := "text", "bigint"
	if o.Dialect == SQLite {
		text, big = "TEXT", "INTEGER"
	}
	return []string{
		fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	id %s PRIMARY KEY,
	created_ms %s NOT NULL,
	keys %s NOT NULL,
	tags %s NOT NULL,
	claim %s,
	claimed_until %s
)`, o.Table, text, big, text, text, text, big),
		fmt.Sprintf(`CREATE INDEX IF NOT EXISTS %s_created ON %s (created_ms)`, o.Table, o.Table),
	}
}

// CreateOutbox creates the outbox table and its index if they do not
// exist (see [Outbox] for the columns). It needs [WithOutbox].
func (d *DB) CreateOutbox(ctx context.Context) error {
	if d.outbox == nil {
		return invalid("CreateOutbox: the DB has no outbox (WithOutbox)")
	}
	for _, stmt := range d.outbox.ddl() {
		if _, err := d.DB.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("sqlcache: CreateOutbox: %w", err)
		}
	}
	return nil
}

// newID returns a random row id.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

func encodeNames(names []string) string {
	if len(names) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(names) // strings always encode
	return string(b)
}

// insert writes inv into the outbox in tx and returns its row's id.
func (o *outbox) insert(ctx context.Context, tx *sql.Tx, inv invalidation) (string, error) {
	id := newID()
	q := fmt.Sprintf("INSERT INTO %s (id, created_ms, keys, tags) VALUES (%s, %s, %s, %s)",
		o.Table, o.p(1), o.now, o.p(2), o.p(3))
	_, err := tx.ExecContext(ctx, q, id, encodeNames(inv.Keys), encodeNames(inv.Tags))
	return id, err
}

// removeTimeout bounds the delete of a committed row: it is best effort,
// and a Commit must not hang on it.
const removeTimeout = 5 * time.Second

// remove deletes the row id, whose invalidations were applied. A failure
// is logged: a relay deletes the row later (applying it again, which is
// harmless).
func (o *outbox) remove(ctx context.Context, db *sql.DB, id string, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, removeTimeout)
	defer cancel()
	q := fmt.Sprintf("DELETE FROM %s WHERE id = %s", o.Table, o.p(1))
	if _, err := db.ExecContext(ctx, q, id); err != nil {
		logger.Warn("sqlcache: outbox row not deleted after its commit; a relay will apply and delete it",
			"table", o.Table, "id", id, "err", err)
	}
}

// row is one outbox row as a relay reads it.
type row struct {
	id  string
	inv invalidation
	bad error // the row does not decode
}

// scanRows reads rows of (id, keys, tags). A row whose names do not decode
// is returned with bad set, so that it cannot block the rows after it.
func scanRows(rs *sql.Rows) ([]row, error) {
	defer rs.Close()
	var out []row
	for rs.Next() {
		var r row
		var keys, tags string
		if err := rs.Scan(&r.id, &keys, &tags); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(keys), &r.inv.Keys); err != nil {
			r.bad = fmt.Errorf("keys: %w", err)
		} else if err := json.Unmarshal([]byte(tags), &r.inv.Tags); err != nil {
			r.bad = fmt.Errorf("tags: %w", err)
		}
		out = append(out, r)
	}
	return out, rs.Err()
}
