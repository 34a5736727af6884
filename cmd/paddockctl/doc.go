// Command paddockctl inspects and operates a paddock cache on Redis (the
// store of package redisstore): standalone, Sentinel or Cluster.
//
//	paddockctl COMMAND [flags] [arguments]
//
// The commands:
//
//	stats       counters of every publishing process, summed per namespace
//	get         one entry decoded: state, windows, age, ticket, epoch, tags, size
//	invalidate  drop entries by key or tag, fenced like Cache.Invalidate
//	mark-stale  soft-invalidate: entries stay servable as stale while one refresh runs
//	purge-url   drop the cached pages of URLs (httpcache), or of a path prefix
//	urls        per-route hits and misses of the page caches of every publishing process
//	keys        list entries whose keys match a pattern (SCAN, bounded; never KEYS)
//	versions    the versions of tags: their last hard and last invalidation
//	doctor      check Redis for what would make the cache unsafe, and say why
//	watch       print invalidations as they happen, from every process
//
// Every command takes the connection flags: --addr (host:port, or a unix
// socket path; several, comma-separated, with --cluster), --sentinel and
// --master, --username, --password (or $PADDOCK_REDIS_PASSWORD), --db,
// --key-prefix (redisstore.Prefix, default "paddock:") and --timeout; and
// --json, which prints JSON for scripts. Flags may come before or after
// the arguments.
//
// stats and urls read what processes publish with package fleetstats
// (opt-in): a process that publishes nothing is not counted, and one that
// died drops out after three of its intervals.
//
// invalidate, mark-stale and purge-url go through a paddock.Cache on the
// store, so they are fenced like the application's own calls (a load that
// began before cannot store its result), and an invalidation of a key
// also drops the entries built from it by nested Gets. With --dry-run
// they change nothing and count the entries they would drop, walking the
// key space with SCAN up to --limit keys. purge-url computes its tags as
// httpcache does: give it the page cache's --namespace and the views'
// --only-query / --ignore-query rules.
//
// doctor checks the Redis version, maxmemory-policy, persistence, the
// Cluster's slots and the epoch markers, and explains each finding. It
// exits with status 3 when something is unsafe. Other exit statuses: 0
// done, 1 a failure (Redis unreachable, an error), 2 bad usage.
package main
