package sqlcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Defaults of the relay options.
const (
	// DefaultGrace is the default of [Grace].
	DefaultGrace = 5 * time.Second
	// DefaultPollInterval is the default of [PollInterval].
	DefaultPollInterval = time.Second
	// DefaultBatchSize is the default of [BatchSize].
	DefaultBatchSize = 100
	// DefaultClaimTTL is the default of [ClaimTTL].
	DefaultClaimTTL = 30 * time.Second

	maxRelayBackoff = 30 * time.Second
)

// A Relay applies the invalidations left in an outbox table by commits
// whose process did not apply them (it died, or the store did not answer),
// and deletes their rows. Make one with [DB.Relay] and run it with
// [Relay.Run] in as many processes as you like.
//
// A row is applied at least once: it is deleted only after the store
// acknowledged its invalidations, in the same pass, so a relay that dies
// mid-pass leaves it for the next one. Applying a row twice is harmless:
// an invalidation is idempotent (it costs a miss). Relays share the table:
// on PostgreSQL each pass locks its rows with FOR UPDATE SKIP LOCKED, so
// relays never wait for each other and a row is applied twice only if a
// relay dies between the store's acknowledgement and its commit; on SQLite
// a pass claims its rows for [ClaimTTL], and a row is applied twice only if
// a pass outlives its claim. A relay started after downtime applies every
// row left meanwhile, oldest first.
//
// Only rows older than the [Grace] period are applied: younger ones are the
// committing process's to apply and delete itself.
type Relay struct {
	d                         *DB
	grace, interval, claimTTL time.Duration
	batch                     int
}

// A RelayOption configures a [Relay].
type RelayOption interface {
	applyRelay(*Relay) error
}

type relayOption func(*Relay) error

func (f relayOption) applyRelay(r *Relay) error { return f(r) }

// Grace sets how old, by the database's clock, a row must be before a
// relay applies it: long enough for the committing process to apply and
// delete it itself. Zero applies every row at once. Default:
// [DefaultGrace].
func Grace(d time.Duration) RelayOption {
	return relayOption(func(r *Relay) error {
		if d < 0 {
			return invalid("Grace(%v): negative", d)
		}
		r.grace = d
		return nil
	})
}

// PollInterval sets how long [Relay.Run] waits after a pass that found the
// table empty. An invalidation whose process died is applied within Grace
// plus PollInterval (plus one pass) after its commit, while a relay runs.
// Default: [DefaultPollInterval].
func PollInterval(d time.Duration) RelayOption {
	return relayOption(func(r *Relay) error {
		if d <= 0 {
			return invalid("PollInterval(%v): not positive", d)
		}
		r.interval = d
		return nil
	})
}

// BatchSize sets how many rows one pass applies (in one invalidation of
// their keys and one of their tags) and deletes. Default:
// [DefaultBatchSize].
func BatchSize(n int) RelayOption {
	return relayOption(func(r *Relay) error {
		if n <= 0 {
			return invalid("BatchSize(%d): not positive", n)
		}
		r.batch = n
		return nil
	})
}

// ClaimTTL bounds a pass of a relay (one batch), and sets, on SQLite, how
// long a pass holds the rows it claimed; past it another relay may claim
// them (a relay that died mid-pass leaves its rows claimed until then).
// PostgreSQL needs no claim: a dead relay's locks go with its connection.
// Default: [DefaultClaimTTL].
func ClaimTTL(d time.Duration) RelayOption {
	return relayOption(func(r *Relay) error {
		if d <= 0 {
			return invalid("ClaimTTL(%v): not positive", d)
		}
		r.claimTTL = d
		return nil
	})
}

// Relay returns a relay of the DB's outbox (see [WithOutbox]), which
// applies its rows through the DB's Cache.
func (d *DB) Relay(opts ...RelayOption) (*Relay, error) {
	if d.outbox == nil {
		return nil, invalid("Relay: the DB has no outbox (WithOutbox)")
	}
	r := &Relay{d: d, grace: DefaultGrace, interval: DefaultPollInterval, claimTTL: DefaultClaimTTL, batch: DefaultBatchSize}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("Relay: nil option")
		}
		if err := o.applyRelay(r); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Run applies the outbox's rows until ctx ends, then returns ctx's error.
// It runs passes until the table has no row older than the grace period,
// waits [PollInterval], and starts again. A pass that fails (the database
// or the store is down) is logged and tried again after a backoff, from
// PollInterval up to 30 s.
func (r *Relay) Run(ctx context.Context) error {
	wait := r.interval
	for {
		_, err := r.RunOnce(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			r.d.logger.Error("sqlcache: relay pass failed", "table", r.d.outbox.Table, "err", err, "retry_in", wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		if err != nil {
			wait = min(2*wait, max(maxRelayBackoff, r.interval))
		} else {
			wait = r.interval
		}
	}
}

// RunOnce applies and deletes the rows older than the grace period, in
// passes of [BatchSize], until none is left, and returns how many rows it
// applied (a row that did not decode is deleted, logged, and not counted).
// On an error it stops: the rows of the failed pass stay for a later one.
//
// A pass that has begun runs to its end, bounded by [ClaimTTL], even if ctx
// ends meanwhile: cut short, it would leave rows it had applied, to be
// applied again.
func (r *Relay) RunOnce(ctx context.Context) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.claimTTL)
		n, full, err := r.pass(pctx)
		cancel()
		total += n
		if err != nil || !full {
			return total, err
		}
	}
}

// pass applies and deletes one batch. full reports that the batch was
// full: there may be more.
func (r *Relay) pass(ctx context.Context) (n int, full bool, err error) {
	if r.d.outbox.Dialect == Postgres {
		return r.passLocked(ctx)
	}
	return r.passClaimed(ctx)
}

// passLocked is a pass on PostgreSQL: the rows are locked in a
// transaction that deletes them once they are applied.
//
//	relay A: SELECT ... FOR UPDATE SKIP LOCKED   (rows 1-100, locked)
//	relay B: SELECT ... FOR UPDATE SKIP LOCKED   (rows 101-200: A's skipped)
//	relay A: invalidate; DELETE rows 1-100; COMMIT
//
// A relay that dies before its COMMIT leaves its rows in place, unlocked
// as soon as its connection closes.
func (r *Relay) passLocked(ctx context.Context) (int, bool, error) {
	o := r.d.outbox
	tx, err := r.d.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, err
	}
	defer tx.Rollback() // after Commit: ErrTxDone, ignored
	rs, err := tx.QueryContext(ctx, fmt.Sprintf(
		"SELECT id, keys, tags FROM %s WHERE created_ms <= %s - %s ORDER BY created_ms, id LIMIT %s FOR UPDATE SKIP LOCKED",
		o.Table, o.now, o.p(1), o.p(2)), r.grace.Milliseconds(), r.batch)
	if err != nil {
		return 0, false, err
	}
	rows, err := scanRows(rs)
	if err != nil || len(rows) == 0 {
		return 0, false, err
	}
	n, err := r.apply(ctx, rows)
	if err != nil {
		return 0, false, err
	}
	ids := make([]any, len(rows))
	for i, row := range rows {
		ids[i] = row.id
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE id IN (%s)",
		o.Table, o.placeholders(1, len(ids))), ids...); err != nil {
		return 0, false, err
	}
	if err := tx.Commit(); err != nil {
		return 0, false, err
	}
	return n, len(rows) == r.batch, nil
}

// passClaimed is a pass on SQLite: the rows are claimed with one UPDATE
// (SQLite runs one writer at a time, so two relays never claim a row at
// once), applied, and deleted if the claim is still this pass's.
//
//	relay A: UPDATE ... SET claim = a  (rows 1-100)
//	relay B: UPDATE ... SET claim = b  (rows 101-200: A's are claimed)
//	relay A: invalidate; DELETE WHERE claim = a
//
// A relay that dies leaves its rows claimed until the claim expires.
func (r *Relay) passClaimed(ctx context.Context) (int, bool, error) {
	o, db := r.d.outbox, r.d.DB
	claim := newID()
	res, err := db.ExecContext(ctx, fmt.Sprintf(
		"UPDATE %[1]s SET claim = ?, claimed_until = %[2]s + ? WHERE id IN ("+
			"SELECT id FROM %[1]s WHERE created_ms <= %[2]s - ? AND (claimed_until IS NULL OR claimed_until <= %[2]s) "+
			"ORDER BY created_ms, id LIMIT ?)", o.Table, o.now),
		claim, r.claimTTL.Milliseconds(), r.grace.Milliseconds(), r.batch)
	if err != nil {
		return 0, false, err
	}
	if c, err := res.RowsAffected(); err == nil && c == 0 {
		return 0, false, nil
	}
	rs, err := db.QueryContext(ctx, fmt.Sprintf("SELECT id, keys, tags FROM %s WHERE claim = ?", o.Table), claim)
	if err != nil {
		return 0, false, err
	}
	rows, err := scanRows(rs)
	if err == nil && len(rows) > 0 {
		var n int
		if n, err = r.apply(ctx, rows); err == nil {
			if _, err = db.ExecContext(ctx, fmt.Sprintf("DELETE FROM %s WHERE claim = ?", o.Table), claim); err == nil {
				return n, len(rows) == r.batch, nil
			}
		}
	}
	// Give the rows back to the next pass rather than keep them for the
	// claim's time. If this fails too, the claim expires.
	if err != nil {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), removeTimeout)
		defer cancel()
		_, _ = db.ExecContext(uctx, fmt.Sprintf("UPDATE %s SET claim = NULL, claimed_until = NULL WHERE claim = ?", o.Table), claim)
	}
	return 0, false, err
}

// apply applies the rows' invalidations as one of keys and one of tags,
// and returns how many rows it applied. Rows that cannot be applied (they
// do not decode, or name a key without a namespace, which the Cache would
// refuse on every try) are logged and counted out; they are deleted with
// the others.
func (r *Relay) apply(ctx context.Context, rows []row) (int, error) {
	var inv invalidation
	n := 0
	for _, row := range rows {
		bad := row.bad
		if bad == nil {
			bad = checkNames(row.inv)
		}
		if bad != nil {
			r.d.logger.Error("sqlcache: outbox row dropped: it cannot be applied",
				"table", r.d.outbox.Table, "id", row.id, "err", bad)
			continue
		}
		inv.Keys = append(inv.Keys, row.inv.Keys...)
		inv.Tags = append(inv.Tags, row.inv.Tags...)
		n++
	}
	slices.Sort(inv.Keys)
	inv.Keys = slices.Compact(inv.Keys)
	slices.Sort(inv.Tags)
	inv.Tags = slices.Compact(inv.Tags)
	if err := r.d.apply(ctx, inv); err != nil {
		return 0, fmt.Errorf("sqlcache: relay: %w", err)
	}
	return n, nil
}

// checkNames reports a key without a namespace or an empty tag.
func checkNames(inv invalidation) error {
	for _, k := range inv.Keys {
		if !strings.Contains(k, ":") {
			return fmt.Errorf("key %q has no namespace", k)
		}
	}
	if slices.Contains(inv.Tags, "") {
		return errors.New("empty tag")
	}
	return nil
}
