package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/redisstore"
)

// Exit codes.
const (
	exitOK     = 0
	exitError  = 1 // Redis failed, or the command did
	exitUsage  = 2 // bad flags or arguments
	exitUnsafe = 3 // doctor found something unsafe
)

// A command is one subcommand: its name, a line of help, an example, the
// arguments it takes, and what it runs.
type command struct {
	name, args, summary, example string
	flags                        func(fs *flag.FlagSet) func(e *env, args []string) error
}

var commands = []command{
	{"stats", "", "counters of every publishing process, summed per namespace", "paddockctl stats --per-process", statsCmd},
	{"get", "NS KEY", "one entry decoded: state, windows, age, ticket, epoch, tags, size", "paddockctl get article 42", getCmd},
	{"invalidate", "", "drop entries by key or tag, fenced like Cache.Invalidate", "paddockctl invalidate --tag author:7 --dry-run", invalidateCmd},
	{"mark-stale", "", "soft-invalidate: entries stay servable as stale while one refresh runs", "paddockctl mark-stale --tag articles", markStaleCmd},
	{"purge-url", "URL...", "drop the cached pages of URLs (httpcache), or of a path prefix", "paddockctl purge-url '/blog/?page=2'", purgeURLCmd},
	{"urls", "", "per-route hits and misses of the page caches of every publishing process", "paddockctl urls --prefix /blog/", urlsCmd},
	{"keys", "", "list entries whose keys match a pattern (SCAN, bounded; never KEYS)", "paddockctl keys --match 'article:*' --limit 10000", keysCmd},
	{"versions", "TAG...", "the versions of tags: their last hard and last invalidation", "paddockctl versions author:7", versionsCmd},
	{"doctor", "", "check Redis for what would make the cache unsafe, and say why (exit 3 if unsafe)", "paddockctl doctor", doctorCmd},
	{"watch", "", "print invalidations as they happen, from every process", "paddockctl watch --count 10", watchCmd},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// conn are the connection flags, shared by every command.
type conn struct {
	addr, username, password string
	db                       int
	cluster                  bool
	sentinel, master         string
	prefix                   string
	timeout                  time.Duration
	json                     bool
}

func (c *conn) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", envOr("PADDOCK_REDIS_ADDR", "localhost:6379"),
		"Redis address, host:port or a unix socket path; comma-separated for --cluster ($PADDOCK_REDIS_ADDR)")
	fs.StringVar(&c.username, "username", os.Getenv("PADDOCK_REDIS_USERNAME"), "ACL user name ($PADDOCK_REDIS_USERNAME)")
	fs.StringVar(&c.password, "password", os.Getenv("PADDOCK_REDIS_PASSWORD"), "password; prefer $PADDOCK_REDIS_PASSWORD, which ps does not show")
	fs.IntVar(&c.db, "db", 0, "database number (standalone and Sentinel)")
	fs.BoolVar(&c.cluster, "cluster", false, "Redis Cluster: --addr lists one or more nodes")
	fs.StringVar(&c.sentinel, "sentinel", "", "Sentinel addresses, comma-separated (with --master)")
	fs.StringVar(&c.master, "master", "", "the master name Sentinel watches (with --sentinel)")
	fs.StringVar(&c.prefix, "key-prefix", envOr("PADDOCK_KEY_PREFIX", redisstore.DefaultPrefix), "prefix of the store's Redis keys, as redisstore.Prefix ($PADDOCK_KEY_PREFIX)")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "bound of each Redis call")
	fs.BoolVar(&c.json, "json", false, "print JSON, for scripts")
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// env is what a command runs with.
type env struct {
	ctx    context.Context
	out    io.Writer
	errw   io.Writer
	conn   *conn
	client redis.UniversalClient
	store  *redisstore.Store
}

// usageError is an error in the command line.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errUnsafe ends doctor with exitUnsafe.
var errUnsafe = errors.New("unsafe")

func run(ctx context.Context, args []string, out, errw io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 {
			return run(ctx, []string{args[1], "--help"}, out, errw)
		}
		usage(out)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	var cmd *command
	for i := range commands {
		if commands[i].name == args[0] {
			cmd = &commands[i]
		}
	}
	if cmd == nil {
		fmt.Fprintf(errw, "paddockctl: unknown command %q\n\n", args[0])
		usage(errw)
		return exitUsage
	}
	fs := flag.NewFlagSet("paddockctl "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(errw)
	var c conn
	c.register(fs)
	runner := cmd.flags(fs)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "Usage: paddockctl %s [flags] %s\n\n%s.\n\nExample:\n  %s\n\nFlags:\n", cmd.name, cmd.args, cmd.summary, cmd.example)
		fs.PrintDefaults()
	}
	pos, err := parse(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(out)
		fs.Usage()
		return exitOK
	}
	if err != nil {
		return exitUsage // flag printed it
	}
	client, err := c.client()
	if err != nil {
		fmt.Fprintf(errw, "paddockctl: %v\n", err)
		return exitUsage
	}
	defer client.Close()
	st, err := redisstore.New(client, redisstore.Prefix(c.prefix))
	if err != nil {
		fmt.Fprintf(errw, "paddockctl: %v\n", err)
		return exitUsage
	}
	defer st.Close()
	e := &env{ctx: ctx, out: out, errw: errw, conn: &c, client: client, store: st}
	err = runner(e, pos)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errUnsafe):
		return exitUnsafe
	case errors.As(err, &ue):
		fmt.Fprintf(errw, "paddockctl %s: %v\n", cmd.name, err)
		fs.Usage()
		return exitUsage
	default:
		fmt.Fprintf(errw, "paddockctl %s: %v\n", cmd.name, err)
		return exitError
	}
}

// parse parses flags anywhere among the arguments, and returns the
// others ("--" ends the flags).
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// flag stops at the first non-flag, or after "--".
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `paddockctl inspects and operates a paddock cache on Redis.

Usage: paddockctl COMMAND [flags] [arguments]

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nExamples:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %s\n", c.example)
	}
	fmt.Fprint(w, `
Connection flags (every command): --addr host:port or a socket path,
--cluster, --sentinel ADDRS --master NAME, --username, --password (or
$PADDOCK_REDIS_PASSWORD), --db, --key-prefix (default "paddock:"), --timeout.
--json prints JSON. Bulk actions take --dry-run: what they would drop,
counted. Run "paddockctl COMMAND --help" for a command's flags.

Exit status: 0 done, 1 failed, 2 bad usage, 3 doctor found something unsafe.
`)
}

// client builds the Redis client the flags name.
func (c *conn) client() (redis.UniversalClient, error) {
	addrs := strings.Split(c.addr, ",")
	network, addr := "tcp", addrs[0]
	if a, ok := strings.CutPrefix(addr, "unix:"); ok {
		network, addr = "unix", a
	} else if strings.HasPrefix(addr, "/") {
		network = "unix"
	}
	switch {
	case c.sentinel != "" || c.master != "":
		if c.sentinel == "" || c.master == "" {
			return nil, errors.New("--sentinel and --master go together")
		}
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: c.master, SentinelAddrs: strings.Split(c.sentinel, ","),
			Username: c.username, Password: c.password, DB: c.db,
			ReadTimeout: c.timeout, WriteTimeout: c.timeout, DialTimeout: c.timeout,
			ContextTimeoutEnabled: true,
		}), nil
	case c.cluster:
		return redis.NewClusterClient(&redis.ClusterOptions{
			Addrs: addrs, Username: c.username, Password: c.password,
			ReadTimeout: c.timeout, WriteTimeout: c.timeout, DialTimeout: c.timeout,
			ContextTimeoutEnabled: true,
		}), nil
	}
	if len(addrs) > 1 {
		return nil, errors.New("several addresses need --cluster")
	}
	return redis.NewClient(&redis.Options{
		Network: network, Addr: addr, Username: c.username, Password: c.password, DB: c.db,
		ReadTimeout: c.timeout, WriteTimeout: c.timeout, DialTimeout: c.timeout,
		ContextTimeoutEnabled: true,
	}), nil
}

// printJSON writes v, indented.
func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// call bounds one step by the timeout flag.
func (e *env) call() (context.Context, context.CancelFunc) {
	return context.WithTimeout(e.ctx, e.conn.timeout)
}

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
