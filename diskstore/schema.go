package diskstore

import (
	"context"
	"database/sql"
	"math/rand/v2"
)

// The schema. Keys and tags are BLOBs, compared byte for byte. meta has
// one row: the epoch and sequence of the version protocol, the floors and
// counts that bound the version tables (see [MaxVersions]), and the bytes
// the entries take (see [MaxBytes]). entries is a rowid table: a written
// entry gets a rowid above every other, so the smallest rowid is the
// entry written longest ago, the first to evict.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	epoch  INTEGER NOT NULL,
	seq    INTEGER NOT NULL,
	kfloor INTEGER NOT NULL, ktop INTEGER NOT NULL, kcount INTEGER NOT NULL,
	sfloor INTEGER NOT NULL, stop INTEGER NOT NULL,
	hfloor INTEGER NOT NULL, htop INTEGER NOT NULL, tcount INTEGER NOT NULL,
	bytes  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
	key  BLOB NOT NULL UNIQUE,
	env  BLOB NOT NULL,
	size INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
	key   BLOB PRIMARY KEY,
	token INTEGER NOT NULL,
	until INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS kver (
	key BLOB PRIMARY KEY,
	v   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tver (
	tag  BLOB PRIMARY KEY,
	soft INTEGER NOT NULL,
	hard INTEGER NOT NULL
) WITHOUT ROWID;
`

// meta is the row of the meta table, read at the start of a transaction
// and written back at its end if it changed.
type meta struct {
	epoch, seq           int64
	kfloor, ktop, kcount int64
	sfloor, stop         int64
	hfloor, htop, tcount int64
	bytes                int64
}

const metaCols = `epoch, seq, kfloor, ktop, kcount, sfloor, stop, hfloor, htop, tcount, bytes`

func (m *meta) dest() []any {
	return []any{&m.epoch, &m.seq, &m.kfloor, &m.ktop, &m.kcount, &m.sfloor, &m.stop,
		&m.hfloor, &m.htop, &m.tcount, &m.bytes}
}

func readMeta(w *wtx) (meta, error) {
	var m meta
	err := w.row(`SELECT ` + metaCols + ` FROM meta WHERE id = 1`).Scan(m.dest()...)
	return m, err
}

func writeMeta(w *wtx, m meta) error {
	_, err := w.exec(`UPDATE meta SET epoch = ?, seq = ?, kfloor = ?, ktop = ?, kcount = ?,
		sfloor = ?, stop = ?, hfloor = ?, htop = ?, tcount = ?, bytes = ? WHERE id = 1`,
		m.epoch, m.seq, m.kfloor, m.ktop, m.kcount, m.sfloor, m.stop, m.hfloor, m.htop, m.tcount, m.bytes)
	return err
}

// create makes the tables if they are missing, and the meta row with a
// new epoch. Processes that open a new database at once agree: the first
// transaction creates it, the others find it.
func create(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return err
	}
	_, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO meta (id, `+metaCols+`)
		VALUES (1, ?, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)`, newEpoch(0))
	return err
}

// newEpoch returns a random epoch other than old and zero, as an int64
// (SQLite's integers are signed; the bits are the ticket's uint64).
func newEpoch(old int64) int64 {
	for {
		if e := int64(rand.Uint64()); e != 0 && e != old {
			return e
		}
	}
}
