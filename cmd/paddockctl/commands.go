package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fleetstats"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/redisstore"
)

func statsCmd(fs *flag.FlagSet) func(*env, []string) error {
	per := fs.Bool("per-process", false, "one row per process and namespace, besides the sums")
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("stats takes no arguments")
		}
		ctx, cancel := e.call()
		defer cancel()
		procs, err := fleetstats.Read(ctx, e.client, e.conn.prefix)
		if err != nil {
			return err
		}
		sum := fleetstats.Sum(procs)
		if e.conn.json {
			v := map[string]any{"processes": len(procs), "namespaces": sum}
			if *per {
				v["per_process"] = procs
			}
			return e.printJSON(v)
		}
		if len(procs) == 0 {
			fmt.Fprintln(e.out, "no process publishes its counters under this prefix (see package fleetstats)")
			return nil
		}
		tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "PROCESS\tNAMESPACE\tHITS\tSTALE\tMISSES\tLOADS\tLOAD ERR\tCOALESCED\tREFUSED\tFILL ERR\tINVALIDATED\tPENDING\tHIT RATIO\t")
		row := func(proc, ns string, s paddock.Stats) {
			name := ns
			if name == "" {
				name = `""`
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t\n", proc, name, s.Hits, s.StaleHits, s.Misses,
				s.Loads, s.LoadErrors, s.Coalesced, s.FillsRefused, s.FillErrors, s.Invalidations, s.InvalidationsPending, ratio(s))
		}
		if *per {
			for _, p := range procs {
				for _, ns := range slices.Sorted(maps.Keys(p.Namespaces)) {
					row(p.Name, ns, p.Namespaces[ns])
				}
			}
		}
		for _, ns := range slices.Sorted(maps.Keys(sum)) {
			row(fmt.Sprintf("(%d processes)", len(procs)), ns, sum[ns])
		}
		return tw.Flush()
	}
}

func ratio(s paddock.Stats) string {
	n := s.Hits + s.StaleHits + s.Misses
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(s.Hits+s.StaleHits)/float64(n))
}

// entryJSON is get's JSON form.
type entryJSON struct {
	Key          string                           `json:"key"`
	State        string                           `json:"state"`
	Reason       string                           `json:"reason,omitempty"`
	Now          time.Time                        `json:"now"`
	Epoch        uint64                           `json:"epoch"`
	EpochFound   bool                             `json:"epoch_found"`
	Version      uint64                           `json:"key_version"`
	Size         int                              `json:"size,omitempty"`
	Negative     bool                             `json:"negative,omitempty"`
	Soft         bool                             `json:"soft,omitempty"`
	TicketEpoch  uint64                           `json:"ticket_epoch,omitempty"`
	TicketSeq    uint64                           `json:"ticket_seq,omitempty"`
	Created      *time.Time                       `json:"created,omitempty"`
	AgeSeconds   float64                          `json:"age_seconds,omitempty"`
	FreshUntil   *time.Time                       `json:"fresh_until,omitempty"`
	StaleUntil   *time.Time                       `json:"stale_until,omitempty"`
	ErrorUntil   *time.Time                       `json:"error_until,omitempty"`
	RefreshAt    *time.Time                       `json:"refresh_at,omitempty"`
	LoadDuration time.Duration                    `json:"load_duration_ns,omitempty"`
	Tags         []string                         `json:"tags,omitempty"`
	TagVersions  map[string]redisstore.TagVersion `json:"tag_versions,omitempty"`
	ValueSize    int                              `json:"value_size,omitempty"`
	Value        string                           `json:"value,omitempty"`
	ValueVersion *uint64                          `json:"value_version,omitempty"`
	LeaseToken   uint64                           `json:"lease_token,omitempty"`
	LeaseExpires *time.Time                       `json:"lease_expires,omitempty"`
}

func getCmd(fs *flag.FlagSet) func(*env, []string) error {
	value := fs.Bool("value", false, "print the stored value too (quoted, at most 1 KiB), without the loader version it starts with")
	return func(e *env, args []string) error {
		if len(args) != 2 {
			return usagef("get takes a namespace and a key")
		}
		ctx, cancel := e.call()
		defer cancel()
		in, err := e.store.Inspect(ctx, args[0]+":"+args[1])
		if err != nil {
			return err
		}
		j := entryJSON{Key: in.Key, State: in.State, Reason: in.Reason, Now: in.Now, Epoch: in.Epoch, EpochFound: in.EpochFound,
			Version: in.Version, Size: in.Size, Soft: in.Soft, TagVersions: in.TagVersions, LeaseToken: in.LeaseToken}
		if in.LeaseToken != 0 {
			j.LeaseExpires = &in.LeaseExpires
		}
		if en := in.Entry; en != nil {
			j.Negative, j.TicketEpoch, j.TicketSeq = en.Negative, en.Ticket.Epoch, en.Ticket.Seq
			j.Created, j.FreshUntil, j.StaleUntil, j.ErrorUntil = &en.Created, &en.FreshUntil, &en.StaleUntil, &en.ErrorUntil
			if !en.RefreshAt.IsZero() {
				j.RefreshAt = &en.RefreshAt
			}
			j.AgeSeconds = in.Now.Sub(en.Created).Seconds()
			j.LoadDuration, j.Tags, j.ValueSize = en.LoadDuration, en.Tags, len(en.Value)
			if *value {
				v := en.Value
				// A Loader's value starts with its Version, a uvarint
				// (see paddock.Version); the payload follows.
				if ver, n := binary.Uvarint(v); n > 0 {
					j.ValueVersion, v = &ver, v[n:]
				}
				if len(v) > 1024 {
					v = v[:1024]
				}
				j.Value = string(v)
			}
		}
		if e.conn.json {
			return e.printJSON(j)
		}
		tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
		p := func(k, format string, args ...any) { fmt.Fprintf(tw, "%s\t"+format+"\n", append([]any{k}, args...)...) }
		p("key", "%s", j.Key)
		p("state", "%s", j.State)
		if j.Reason != "" {
			p("why", "%s", j.Reason)
		}
		if en := in.Entry; en != nil {
			rel := func(t time.Time) string {
				d := t.Sub(in.Now).Round(time.Millisecond)
				if d >= 0 {
					return fmt.Sprintf("%s (in %v)", t.UTC().Format(time.RFC3339Nano), d)
				}
				return fmt.Sprintf("%s (%v ago)", t.UTC().Format(time.RFC3339Nano), -d)
			}
			p("created", "%s", rel(en.Created))
			p("age", "%v", in.Now.Sub(en.Created).Round(time.Millisecond))
			p("fresh until", "%s", rel(en.FreshUntil))
			p("stale until", "%s", rel(en.StaleUntil))
			p("error until", "%s", rel(en.ErrorUntil))
			if !en.RefreshAt.IsZero() {
				p("refresh at", "%s", rel(en.RefreshAt))
			}
			p("ticket", "epoch %d, seq %d", en.Ticket.Epoch, en.Ticket.Seq)
			p("load took", "%v", en.LoadDuration)
			p("negative", "%v", en.Negative)
			p("size", "%d bytes in Redis, value %d bytes", in.Size, len(en.Value))
			for _, t := range en.Tags {
				tv := in.TagVersions[t]
				p("tag", "%s (hard %d, any %d)", t, tv.Hard, tv.Any)
			}
			if *value {
				if j.ValueVersion != nil {
					p("value", "%q (loader version %d)", j.Value, *j.ValueVersion)
				} else {
					p("value", "%q (bytes that do not start with a loader version)", j.Value)
				}
			}
		} else if in.Size > 0 {
			p("size", "%d bytes in Redis", in.Size)
		}
		if in.EpochFound {
			p("epoch", "%d (floor %d)", in.Epoch, in.Floor)
		} else {
			p("epoch", "none yet")
		}
		p("key version", "%d", in.Version)
		if in.LeaseToken != 0 {
			p("lease", "held by %d until %s", in.LeaseToken, in.LeaseExpires.UTC().Format(time.RFC3339Nano))
		}
		return tw.Flush()
	}
}

// bulk are the flags of invalidate and mark-stale.
type bulk struct {
	ns         string
	keys, tags multi
	dry        bool
	limit      int
}

func (b *bulk) register(fs *flag.FlagSet, keys bool) {
	if keys {
		fs.Var(&b.keys, "key", "a key to drop (repeatable); with --ns the key within that namespace, else a full key \"ns:key\"")
		fs.StringVar(&b.ns, "ns", "", "the namespace of the --key flags")
	}
	fs.Var(&b.tags, "tag", "a tag to drop (repeatable)")
	fs.BoolVar(&b.dry, "dry-run", false, "drop nothing: count the entries it would drop (a bounded SCAN)")
	fs.IntVar(&b.limit, "limit", 1_000_000, "with --dry-run, the most Redis keys the count walks")
}

func (b *bulk) fullKeys() []string {
	out := make([]string, len(b.keys))
	for i, k := range b.keys {
		if b.ns != "" {
			k = b.ns + ":" + k
		}
		out[i] = k
	}
	return out
}

// dryRun counts the entries that an invalidation of keys and tags would
// drop: the keys themselves, and every entry carrying one of the tags or
// a key's dependency tag (see paddock.DependencyTag).
func (e *env) dryRun(action string, keys, tags []string, limit int) error {
	want := make(map[string]bool)
	for _, t := range tags {
		want[t] = true
	}
	named := make(map[string]bool)
	for _, k := range keys {
		named[k] = true
		want[paddock.DependencyTag(k)] = true
	}
	seen := make(map[string]bool)
	complete, err := e.store.Scan(e.ctx, "", limit, func(se redisstore.ScannedEntry) error {
		hit := named[se.Key]
		for _, t := range se.Tags {
			hit = hit || want[t]
		}
		if hit {
			seen[se.Key] = true
		}
		return nil
	})
	if err != nil {
		return err
	}
	if e.conn.json {
		return e.printJSON(map[string]any{"dry_run": true, "action": action, "keys": keys, "tags": tags,
			"entries": len(seen), "complete": complete, "sample": sample(seen)})
	}
	at := ""
	if !complete {
		at = fmt.Sprintf(" at least (the count stopped after walking %d Redis keys; raise --limit)", limit)
	}
	fmt.Fprintf(e.out, "dry run: %s %d keys and %d tags would drop %d entries%s\n", action, len(keys), len(tags), len(seen), at)
	for _, k := range sample(seen) {
		fmt.Fprintf(e.out, "  %s\n", k)
	}
	return nil
}

// sample returns up to 20 of the keys, sorted.
func sample(m map[string]bool) []string {
	s := slices.Sorted(maps.Keys(m))
	if len(s) > 20 {
		s = s[:20]
	}
	return s
}

// cache returns a Cache on the command's store, for the calls that go
// through the Cache's API (with its fences and dependency tags).
func (e *env) cache() (*paddock.Cache, error) {
	return paddock.New(e.store, paddock.StoreTimeout(e.conn.timeout))
}

func invalidateCmd(fs *flag.FlagSet) func(*env, []string) error {
	var b bulk
	b.register(fs, true)
	return func(e *env, args []string) error { return b.run(e, args, false) }
}

func markStaleCmd(fs *flag.FlagSet) func(*env, []string) error {
	var b bulk
	b.register(fs, true)
	return func(e *env, args []string) error { return b.run(e, args, true) }
}

func (b *bulk) run(e *env, args []string, soft bool) error {
	if len(args) > 0 {
		return usagef("unexpected arguments %q: name keys with --key and tags with --tag", args)
	}
	if len(b.keys) == 0 && len(b.tags) == 0 {
		return usagef("nothing to drop: give --key or --tag")
	}
	keys := b.fullKeys()
	for _, k := range keys {
		if !strings.Contains(k, ":") {
			return usagef("key %q has no namespace: give --ns, or a full key \"ns:key\"", k)
		}
	}
	action := "invalidating"
	if soft {
		action = "marking stale"
	}
	if b.dry {
		return e.dryRun(action, keys, b.tags, b.limit)
	}
	c, err := e.cache()
	if err != nil {
		return err
	}
	defer c.Close()
	if soft {
		err = c.MarkStale(e.ctx, keys...)
		if err == nil {
			err = c.MarkStaleTags(e.ctx, b.tags...)
		}
	} else {
		err = c.Invalidate(e.ctx, keys...)
		if err == nil {
			err = c.InvalidateTags(e.ctx, b.tags...)
		}
	}
	if err != nil {
		return err
	}
	if e.conn.json {
		return e.printJSON(map[string]any{"done": true, "soft": soft, "keys": keys, "tags": []string(b.tags)})
	}
	fmt.Fprintf(e.out, "done: %s %d keys and %d tags\n", action, len(keys), len(b.tags))
	return nil
}

func purgeURLCmd(fs *flag.FlagSet) func(*env, []string) error {
	ns := fs.String("namespace", httpcache.DefaultNamespace, "the page cache's namespace (httpcache.Namespace)")
	prefix := fs.Bool("prefix", false, "each argument is a path prefix (/blog/): purge every page under it")
	soft := fs.Bool("soft", false, "mark the pages stale instead of dropping them")
	var only, ignore multi
	fs.Var(&only, "only-query", "a query parameter the views key on (httpcache.OnlyQuery; repeatable)")
	fs.Var(&ignore, "ignore-query", "a query parameter pattern the views ignore (httpcache.IgnoreQuery; repeatable)")
	dry := fs.Bool("dry-run", false, "purge nothing: count the pages it would drop (a bounded SCAN)")
	limit := fs.Int("limit", 1_000_000, "with --dry-run, the most Redis keys the count walks")
	return func(e *env, args []string) error {
		if len(args) == 0 {
			return usagef("purge-url takes one or more URLs (a path with its query)")
		}
		c, err := e.cache()
		if err != nil {
			return err
		}
		defer c.Close()
		opts := []httpcache.Option{httpcache.Namespace(*ns)}
		if len(only) > 0 {
			opts = append(opts, httpcache.OnlyQuery(only...))
		}
		if len(ignore) > 0 {
			opts = append(opts, httpcache.IgnoreQuery(ignore...))
		}
		pc, err := httpcache.New(c, opts...)
		if err != nil {
			return usagef("%v", err)
		}
		var tags []string
		for _, u := range args {
			t, err := pc.PurgeTags(u, *prefix)
			if err != nil {
				return usagef("%v", err)
			}
			tags = append(tags, t...)
		}
		if *dry {
			return e.dryRun("purging "+strings.Join(args, " ")+":", nil, tags, *limit)
		}
		if *soft {
			err = c.MarkStaleTags(e.ctx, tags...)
		} else {
			err = c.InvalidateTags(e.ctx, tags...)
		}
		if err != nil {
			return err
		}
		if e.conn.json {
			return e.printJSON(map[string]any{"done": true, "soft": *soft, "urls": args, "tags": tags})
		}
		fmt.Fprintf(e.out, "done: purged %d URLs (tags %s)\n", len(args), strings.Join(tags, " "))
		return nil
	}
}

func urlsCmd(fs *flag.FlagSet) func(*env, []string) error {
	prefix := fs.String("prefix", "", "only routes starting with this")
	per := fs.Bool("per-process", false, "one table per process, besides the sums")
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("urls takes no arguments")
		}
		ctx, cancel := e.call()
		defer cancel()
		procs, err := fleetstats.Read(ctx, e.client, e.conn.prefix)
		if err != nil {
			return err
		}
		filter := func(ps []fleetstats.Process) []httpcache.RouteStats {
			for i := range ps {
				ps[i].Routes = slices.DeleteFunc(slices.Clone(ps[i].Routes), func(r httpcache.RouteStats) bool {
					return !strings.HasPrefix(r.Route, *prefix)
				})
			}
			return fleetstats.SumRoutes(ps)
		}
		sum := filter(procs)
		if e.conn.json {
			v := map[string]any{"processes": len(procs), "routes": sum}
			if *per {
				v["per_process"] = procs
			}
			return e.printJSON(v)
		}
		table := func(title string, rows []httpcache.RouteStats) {
			fmt.Fprintln(e.out, title)
			tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', tabwriter.AlignRight)
			fmt.Fprintln(tw, "ROUTE\tHITS\tSTALE\tMISSES\tSTORED\tCOALESCED\tBYPASSED\t304\tHIT RATIO\tNOT CACHED, WHY\t")
			for _, s := range rows {
				var why []string
				for _, k := range slices.Sorted(maps.Keys(s.Reasons)) {
					why = append(why, fmt.Sprintf("%s=%d", k, s.Reasons[k]))
				}
				fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f%%\t%s\t\n", s.Route, s.Hits, s.Stale, s.Misses, s.Stored,
					s.Coalesced, s.Bypassed, s.NotModified, 100*s.HitRatio(), strings.Join(why, " "))
			}
			tw.Flush()
		}
		if *per {
			for _, p := range procs {
				table(p.Name+":", filter([]fleetstats.Process{p}))
			}
		}
		table(fmt.Sprintf("%d processes:", len(procs)), sum)
		return nil
	}
}

func keysCmd(fs *flag.FlagSet) func(*env, []string) error {
	match := fs.String("match", "*", "a glob over full keys (\"ns:key\"): * ? [abc], \\ escapes")
	limit := fs.Int("limit", 100_000, "the most Redis keys the SCAN walks (per Cluster master)")
	tags := fs.Bool("tags", false, "print each entry's tags")
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("keys takes no arguments: give the pattern with --match")
		}
		if *limit < 1 {
			return usagef("--limit must be positive")
		}
		type row struct {
			Key     string   `json:"key"`
			Size    int      `json:"size"`
			Tags    []string `json:"tags,omitempty"`
			Corrupt bool     `json:"corrupt,omitempty"`
		}
		var rows []row
		seen := make(map[string]bool)
		complete, err := e.store.Scan(e.ctx, *match, *limit, func(se redisstore.ScannedEntry) error {
			if !seen[se.Key] {
				seen[se.Key] = true
				rows = append(rows, row{se.Key, se.Size, se.Tags, se.Corrupt})
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.SortFunc(rows, func(a, b row) int { return strings.Compare(a.Key, b.Key) })
		if e.conn.json {
			return e.printJSON(map[string]any{"keys": rows, "complete": complete})
		}
		for _, r := range rows {
			line := fmt.Sprintf("%s\t%d B", r.Key, r.Size)
			if r.Corrupt {
				line += "\tcorrupt"
			} else if *tags && len(r.Tags) > 0 {
				line += "\t" + strings.Join(r.Tags, " ")
			}
			fmt.Fprintln(e.out, line)
		}
		if complete {
			fmt.Fprintf(e.out, "%d entries (the whole key space walked)\n", len(rows))
		} else {
			fmt.Fprintf(e.out, "%d entries (SCAN stopped after about %d Redis keys: raise --limit for more)\n", len(rows), *limit)
		}
		return nil
	}
}

func versionsCmd(fs *flag.FlagSet) func(*env, []string) error {
	return func(e *env, args []string) error {
		if len(args) == 0 {
			return usagef("versions takes one or more tags")
		}
		ctx, cancel := e.call()
		defer cancel()
		tv, err := e.store.TagVersions(ctx, args...)
		if err != nil {
			return err
		}
		if e.conn.json {
			return e.printJSON(tv)
		}
		tw := tabwriter.NewWriter(e.out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TAG\tHARD\tANY\tNOTE")
		for _, t := range args {
			v := tv[t]
			note := ""
			switch {
			case v.Corrupt:
				note = "does not parse: the next lookup of an entry with this tag drops it"
			case !v.Found:
				note = "never filled nor invalidated here"
			case v.Any == 0:
				note = "never invalidated"
			case v.Any > v.Hard:
				note = "last invalidation was soft (mark-stale)"
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", t, v.Hard, v.Any, note)
		}
		return tw.Flush()
	}
}

func watchCmd(fs *flag.FlagSet) func(*env, []string) error {
	count := fs.Int("count", 0, "exit after this many changes (0: until interrupted)")
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("watch takes no arguments")
		}
		type event struct {
			Time  time.Time `json:"time"`
			Event string    `json:"event"`
			Keys  []string  `json:"keys,omitempty"`
			Tags  []string  `json:"tags,omitempty"`
		}
		events := make(chan event, 1024)
		cancel := e.store.Listen(func(keys, tags []string) {
			events <- event{time.Now(), "change", slices.Clone(keys), slices.Clone(tags)}
		}, func(up bool) {
			ev := "down"
			if up {
				ev = "up"
			}
			events <- event{Time: time.Now(), Event: ev}
		})
		defer cancel()
		n := 0
		for {
			select {
			case <-e.ctx.Done():
				return nil
			case ev := <-events:
				if e.conn.json {
					if err := e.printJSONLine(ev); err != nil {
						return err
					}
				} else {
					switch ev.Event {
					case "up":
						fmt.Fprintf(e.out, "%s listening\n", ev.Time.Format(time.TimeOnly))
					case "down":
						fmt.Fprintf(e.out, "%s feed lost: changes may be missed until it is back\n", ev.Time.Format(time.TimeOnly))
					default:
						for _, k := range ev.Keys {
							fmt.Fprintf(e.out, "%s key %s\n", ev.Time.Format(time.TimeOnly), k)
						}
						for _, t := range ev.Tags {
							fmt.Fprintf(e.out, "%s tag %s\n", ev.Time.Format(time.TimeOnly), t)
						}
					}
				}
				if ev.Event == "change" {
					if n++; *count > 0 && n >= *count {
						return nil
					}
				}
			}
		}
	}
}
