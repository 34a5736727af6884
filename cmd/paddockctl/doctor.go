package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// printJSONLine writes v on one line (a stream of events).
func (e *env) printJSONLine(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.out, "%s\n", b)
	return err
}

// The levels of a finding.
const (
	levelOK     = "ok"
	levelWarn   = "warn"
	levelUnsafe = "unsafe"
)

// A finding is one thing doctor checked.
type finding struct {
	Level  string `json:"level"`
	Check  string `json:"check"`
	Server string `json:"server,omitempty"`
	What   string `json:"what"`
	Why    string `json:"why,omitempty"`
}

// server is what doctor read from one server.
type server struct {
	addr    string
	info    map[string]string
	config  map[string]string
	confErr error
}

func readServer(ctx context.Context, c *redis.Client) (server, error) {
	s := server{addr: c.Options().Addr, info: map[string]string{}, config: map[string]string{}}
	raw, err := c.Info(ctx, "server", "persistence", "replication", "memory").Result()
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			s.info[k] = v
		}
	}
	for _, p := range []string{"maxmemory-policy", "maxmemory", "appendonly", "appendfsync", "save"} {
		v, err := c.ConfigGet(ctx, p).Result()
		if err != nil {
			s.confErr = err
			break
		}
		s.config[p] = v[p]
	}
	return s, nil
}

func doctorCmd(fs *flag.FlagSet) func(*env, []string) error {
	limit := fs.Int("limit", 1_000_000, "the most Redis keys walked per Cluster master to find the epoch markers")
	return func(e *env, args []string) error {
		if len(args) > 0 {
			return usagef("doctor takes no arguments")
		}
		ctx, cancel := e.call()
		defer cancel()
		var (
			mu      sync.Mutex
			servers []server
		)
		read := func(ctx context.Context, c *redis.Client) error {
			s, err := readServer(ctx, c)
			if err != nil {
				return fmt.Errorf("%s: %w", c.Options().Addr, err)
			}
			mu.Lock()
			servers = append(servers, s)
			mu.Unlock()
			return nil
		}
		var found []finding
		add := func(level, check, srv, what, why string) {
			found = append(found, finding{level, check, srv, what, why})
		}
		switch c := e.client.(type) {
		case *redis.ClusterClient:
			if err := c.ForEachMaster(ctx, read); err != nil {
				return err
			}
			found = append(found, clusterSlots(ctx, c)...)
		case *redis.Client:
			if err := read(ctx, c); err != nil {
				return err
			}
		}
		persisted := false
		for _, s := range servers {
			found = append(found, checkServer(s)...)
			if s.config["appendonly"] == "yes" || s.config["save"] != "" {
				persisted = true
			}
		}

		markers, complete, err := e.store.EpochMarkers(ctx, *limit)
		if err != nil {
			return err
		}
		var noRID, foreign, corrupt int
		for _, m := range markers {
			switch {
			case m.Corrupt:
				corrupt++
			case m.ReplID == "":
				noRID++
			case !m.Trusted():
				foreign++
			}
		}
		where, trusted := "the epoch marker", "the epoch marker is trusted: it names"
		if e.store.IsCluster() {
			where = fmt.Sprintf("%d slot epoch markers", len(markers))
			trusted = where + " trusted: they name"
			if !complete {
				where += " (SCAN stopped at --limit: more may exist)"
			}
		}
		switch {
		case len(markers) == 0:
			add(levelOK, "epoch", "", "no epoch marker under prefix "+strconv.Quote(e.conn.prefix),
				"nothing was written under this prefix yet (or Redis lost it): the first call starts an epoch")
		case noRID > 0 && (persisted || replicated(servers)):
			add(levelUnsafe, "epoch", "", fmt.Sprintf("%d of %s name no replication ID: the failover check is off (SkipFailoverCheck)", noRID, where),
				"with replicas or persistence, a failover or a restart can bring back versions older than an acknowledged invalidation under the same epoch, and the entries it dropped are served again")
		case noRID > 0:
			add(levelWarn, "epoch", "", fmt.Sprintf("%d of %s name no replication ID: the failover check is off (SkipFailoverCheck)", noRID, where),
				"safe only while Redis has no replicas and no persistence")
		default:
			add(levelOK, "epoch", "", trusted+" the replication ID of the server holding them", "")
		}
		if foreign > 0 {
			add(levelWarn, "epoch", "", fmt.Sprintf("%d epoch markers name another replication ID", foreign),
				"a failover or restart happened: the next call on those slots starts a new epoch (the cache starts cold there, nothing stale is served)")
		}
		if corrupt > 0 {
			add(levelWarn, "epoch", "", fmt.Sprintf("%d epoch markers do not parse", corrupt),
				"the next call replaces them with a new epoch (a cold start there)")
		}
		seqKey := e.conn.prefix + "{_}:seq"
		if ttl, err := e.client.PTTL(ctx, seqKey).Result(); err == nil && ttl > 0 {
			add(levelUnsafe, "sequence", "", "the invalidation sequence "+seqKey+" has an expiry",
				"the store never sets one: it must not expire (tickets and versions are on its scale)")
		}

		unsafe := false
		for _, f := range found {
			unsafe = unsafe || f.Level == levelUnsafe
		}
		if e.conn.json {
			if err := e.printJSON(map[string]any{"unsafe": unsafe, "findings": found}); err != nil {
				return err
			}
		} else {
			for _, f := range found {
				srv := ""
				if f.Server != "" {
					srv = " [" + f.Server + "]"
				}
				fmt.Fprintf(e.out, "%-6s %s%s: %s\n", strings.ToUpper(f.Level), f.Check, srv, f.What)
				if f.Why != "" {
					fmt.Fprintf(e.out, "       %s\n", f.Why)
				}
			}
			if unsafe {
				fmt.Fprintln(e.out, "\nunsafe: see above")
			} else {
				fmt.Fprintln(e.out, "\nnothing unsafe found")
			}
		}
		if unsafe {
			return errUnsafe
		}
		return nil
	}
}

func replicated(servers []server) bool {
	for _, s := range servers {
		if n, _ := strconv.Atoi(s.info["connected_slaves"]); n > 0 {
			return true
		}
	}
	return false
}

// checkServer judges one server's version, eviction policy and
// persistence.
func checkServer(s server) []finding {
	var out []finding
	add := func(level, check, what, why string) { out = append(out, finding{level, check, s.addr, what, why}) }
	v := s.info["redis_version"]
	major, _ := strconv.Atoi(strings.SplitN(v, ".", 2)[0])
	if major < 7 {
		add(levelUnsafe, "version", "Redis "+v, "paddock's scripts need Redis 7.0 or later (script flags, the Cluster fence)")
	} else {
		add(levelOK, "version", "Redis "+v, "")
	}
	if role := s.info["role"]; role != "master" {
		add(levelWarn, "role", "the server is a "+role, "the store writes on masters only")
	}
	if s.confErr != nil {
		add(levelWarn, "config", "CONFIG GET refused: "+s.confErr.Error(),
			"cannot check maxmemory-policy and persistence; check them by hand (see the README's Operations section)")
		return out
	}
	policy := s.config["maxmemory-policy"]
	switch {
	case strings.HasPrefix(policy, "allkeys-"):
		add(levelUnsafe, "maxmemory-policy", policy,
			"Redis may evict keys without a TTL: key and tag versions, epoch markers and the sequence. An evicted version lets a fill that an invalidation fenced be written; use noeviction or a volatile-* policy")
	case policy == "noeviction" && s.config["maxmemory"] != "0":
		add(levelOK, "maxmemory-policy", policy+" with maxmemory "+s.config["maxmemory"],
			"when Redis is full, writes fail: fills are skipped and invalidations are retried, nothing stale is served")
	case policy == "noeviction":
		add(levelOK, "maxmemory-policy", policy, "nothing is evicted")
	default:
		add(levelOK, "maxmemory-policy", policy, "only keys with a TTL (entries, leases, fresh markers) can be evicted")
	}
	aof, save := s.config["appendonly"] == "yes", s.config["save"]
	switch {
	case !aof && save == "":
		add(levelOK, "persistence", "none",
			"a restart empties Redis: the next call starts a new epoch, the cache starts cold, nothing stale is served")
	default:
		what := "RDB snapshots (save " + save + ")"
		if aof {
			what = "AOF, appendfsync " + s.config["appendfsync"]
		}
		add(levelOK, "persistence", what,
			"a restart reloads older data; the restarted server takes a new replication ID, so the failover check starts a new epoch and nothing reloaded is trusted (unsafe if the failover check is off: see epoch)")
	}
	return out
}

// clusterSlots checks that every slot is served.
func clusterSlots(ctx context.Context, c *redis.ClusterClient) []finding {
	raw, err := c.ClusterInfo(ctx).Result()
	if err != nil {
		return []finding{{levelWarn, "cluster", "", "CLUSTER INFO failed: " + err.Error(), ""}}
	}
	info := map[string]string{}
	for _, line := range strings.Split(raw, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			info[k] = v
		}
	}
	what := fmt.Sprintf("state %s, %s of 16384 slots assigned, %s ok, %s failing", info["cluster_state"],
		info["cluster_slots_assigned"], info["cluster_slots_ok"], info["cluster_slots_fail"])
	if info["cluster_state"] != "ok" || info["cluster_slots_ok"] != "16384" {
		return []finding{{levelUnsafe, "cluster", "", what,
			"calls on keys of slots not served fail: their invalidations stay pending in the processes that made them, and other processes never hear of them"}}
	}
	return []finding{{levelOK, "cluster", "", what, ""}}
}
