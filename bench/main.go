package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A scenario is one section of the output: a table with a row per library.
type scenario struct {
	name  string
	title string
	run   func(ctx context.Context, e *env) error
}

// scenarios in the order they run and print.
var scenarios = []scenario{
	{"stampede", "Cold stampede, one process", runStampede},
	{"fleet", "Fleet stampede, 4 processes on one Redis", runFleet},
	{"expiry", "Expiry under load", runExpiry},
	{"early", "Early refresh under load, no stale window", runEarly},
	{"race", "The stale-set race", runRace},
	{"warm", "Warm hits", runWarm},
	{"tags", "Tag invalidation", runTags},
	{"memory", "Memory and GC", runMemory},
	{"page-warm", "Page caching: cached-page latency", runPageWarm},
	{"page-cold", "Page caching: renders per cold URL, one process", runPageCold},
	{"page-fleet", "Page caching: renders per cold URL, 4 processes", runPageFleet},
	{"page-purge", "Page caching: stale pages after a purge that races a render", runPagePurge},
}

// env is what every scenario gets: the sizes of this run, the Redis
// server, the libraries to measure and where to print.
type env struct {
	quick bool
	redis string // "" when no Redis is available
	// memcached is the memcached server's address, "" when there is none.
	memcached string
	libs      []Lib
	pages     []PageLib
	out       io.Writer
	log       io.Writer
	run       string // a prefix that makes this run's keys unique

	sum    summary
	errors atomic.Int64 // rows that could not be measured
}

// pick returns the sizes of a quick or a full run.
func (e *env) pick(quick, full int) int {
	if e.quick {
		return quick
	}
	return full
}

func (e *env) pickDur(quick, full time.Duration) time.Duration {
	if e.quick {
		return quick
	}
	return full
}

func (e *env) logf(format string, args ...any) { fmt.Fprintf(e.log, format+"\n", args...) }

// config returns the Config of lib for a scenario, with the Redis address.
func (e *env) config(c Config) Config {
	c.Redis = e.redis
	c.Memcached = e.memcached
	if c.ValueSize == 0 {
		c.ValueSize = 1024
	}
	return c
}

// key returns a key unique to this run, lib and scenario.
func (e *env) key(lib Lib, parts ...any) string {
	var b strings.Builder
	b.WriteString(e.run)
	b.WriteString(":")
	b.WriteString(lib.Name)
	for _, p := range parts {
		fmt.Fprintf(&b, ":%v", p)
	}
	return b.String()
}

// usable reports whether lib can run here; a Redis lib without Redis
// cannot, nor a memcached lib without memcached, nor a floor that only the
// fleet scenario runs (see reachable).
func (e *env) usable(lib Lib) bool {
	return !lib.FleetOnly && e.reachable(lib)
}

// reachable reports whether the servers lib needs are there (the fleet
// scenario's test of a row, floors included).
func (e *env) reachable(lib Lib) bool {
	return (!lib.Redis || e.redis != "") && (!lib.Memcached || e.memcached != "")
}

func main() {
	if len(os.Args) > 2 && os.Args[1] == "-child" {
		if err := runChild(os.Args[2], os.Args[3:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(benchMain())
}

// benchMain runs the scenarios and returns the exit code: 1 if a row
// could not be measured (so that CI's smoke run catches a broken adapter).
func benchMain() int {
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	quick := fs.Bool("quick", false, "small counts: a smoke run in under two minutes")
	only := fs.String("scenario", "", "comma-separated scenarios to run (default all): "+scenarioNames())
	libRE := fs.String("lib", "", "run only the libraries whose name matches this regexp")
	redisAddr := fs.String("redis", "", "use this Redis (host:port or unix socket path) instead of starting redis-server; its keys are namespaced by run, never flushed")
	noRedis := fs.Bool("no-redis", false, "skip the Redis rows")
	mcAddr := fs.String("memcached", "", "use this memcached (host:port or unix socket path) instead of starting one; its keys are namespaced by run, never flushed")
	noMemcached := fs.Bool("no-memcached", false, "skip the memcached rows")
	summaryPath := fs.String("summary", "", "also write the summary table to this file (markdown)")
	list := fs.Bool("list", false, "print the libraries and how each is configured, and exit")
	fs.Parse(os.Args[1:])
	if *list {
		t := newTable("lib=", "store", "module", "configuration")
		t.left = 4
		for _, l := range ordered() {
			t.add("`"+l.Name+"`", where(l), l.Module, l.Notes)
		}
		t.print(os.Stdout)
		fmt.Println()
		t = newTable("lib=", "store", "module", "configuration", "purge")
		t.left = 5
		for _, l := range orderedPages() {
			t.add("`"+l.Name+"`", wherePage(l), l.Module, l.Notes, l.PurgeHow)
		}
		t.print(os.Stdout)
		return 0
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	e := &env{quick: *quick, out: os.Stdout, log: os.Stderr, run: fmt.Sprintf("pb%d", time.Now().UnixNano()%1e9)}
	var want []string
	if *only != "" {
		want = strings.Split(*only, ",")
		for _, w := range want {
			if !slices.ContainsFunc(scenarios, func(s scenario) bool { return s.name == w }) {
				fmt.Fprintf(os.Stderr, "unknown scenario %q (have %s)\n", w, scenarioNames())
				return 2
			}
		}
	}
	var re *regexp.Regexp
	if *libRE != "" {
		re = regexp.MustCompile(*libRE)
	}
	for _, l := range ordered() {
		if re == nil || re.MatchString(l.Name) {
			e.libs = append(e.libs, l)
		}
	}
	for _, l := range orderedPages() {
		if re == nil || re.MatchString(l.Name) {
			e.pages = append(e.pages, l)
		}
	}

	if !*noRedis {
		if *redisAddr != "" {
			e.redis = *redisAddr
		} else {
			srv, err := startRedis()
			if err != nil {
				e.logf("bench: no Redis rows: %v", err)
				if os.Getenv("CI") == "true" {
					e.logf("bench: CI=true needs redis-server")
					return 1
				}
			} else {
				defer srv.Stop()
				e.redis = srv.Addr
			}
		}
	}

	if !*noMemcached && slices.ContainsFunc(e.libs, func(l Lib) bool { return l.Memcached }) {
		if *mcAddr != "" {
			e.memcached = *mcAddr
		} else {
			srv, err := startMemcached()
			if err != nil {
				e.logf("bench: no memcached rows: %v", err)
				if os.Getenv("CI") == "true" {
					e.logf("bench: CI=true needs memcached")
					return 1
				}
			} else {
				defer srv.Stop()
				e.memcached = srv.Addr
			}
		}
	}

	// testing.Benchmark runs the warm-hit benchmarks of bench_test.go's
	// functions; its benchtime comes from the testing flags.
	testing.Init()
	bt := "1s"
	if e.quick {
		bt = "100ms"
	}
	flag.CommandLine.Set("test.benchtime", bt)

	start := time.Now()
	header(e)
	for _, s := range scenarios {
		if want != nil && !slices.Contains(want, s.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		t0 := time.Now()
		e.logf("== %s", s.name)
		fmt.Fprintf(e.out, "\n## %s\n\n", s.title)
		if err := s.run(ctx, e); err != nil {
			fmt.Fprintf(e.out, "\nerror: %v\n", err)
			e.logf("%s: %v", s.name, err)
		}
		e.logf("   %s took %v", s.name, time.Since(t0).Round(time.Millisecond))
	}
	fmt.Fprintf(e.out, "\n## Summary\n\n")
	e.printSummary(e.out)
	fmt.Fprintf(e.out, "\nTotal time: %v; load average at the end: %s.\n", time.Since(start).Round(time.Second), loadavg())
	if *summaryPath != "" {
		caption := fmt.Sprintf("Measured %s on %s (%d CPUs), %s; `cd bench && go run .` (see bench/RESULTS.md for every table).",
			time.Now().UTC().Format("2006-01-02"), cpuModel(), runtime.NumCPU(), runtime.Version())
		if err := e.writeSummary(*summaryPath, caption); err != nil {
			e.logf("bench: %v", err)
			return 1
		}
	}
	if n := e.errors.Load(); n > 0 {
		e.logf("bench: %d rows could not be measured", n)
		return 1
	}
	return 0
}

// loadavg returns the 1, 5 and 15 minute load averages of the machine.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func scenarioNames() string {
	var n []string
	for _, s := range scenarios {
		n = append(n, s.name)
	}
	return strings.Join(n, ",")
}

// header prints the machine notes.
func header(e *env) {
	mode := "full"
	if e.quick {
		mode = "quick (-quick: small counts, for smoke runs; do not quote)"
	}
	fmt.Fprintf(e.out, "# paddock bench: %s run\n\n", mode)
	fmt.Fprintf(e.out, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(e.out, "- go: %s %s/%s, GOMAXPROCS=%d\n", runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.GOMAXPROCS(0))
	fmt.Fprintf(e.out, "- cpu: %s (%d logical CPUs); load average at the start: %s\n", cpuModel(), runtime.NumCPU(), loadavg())
	if e.redis != "" {
		fmt.Fprintf(e.out, "- redis: %s at %s (loopback TCP unless a socket path)\n", redisVersion(e.redis), e.redis)
	}
	if e.memcached != "" {
		fmt.Fprintf(e.out, "- memcached: %s at %s (loopback TCP unless a socket path)\n", memcachedVersion(e.memcached), e.memcached)
	} else {
		fmt.Fprintf(e.out, "- redis: none (Redis rows skipped)\n")
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
