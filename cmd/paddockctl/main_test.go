package main_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/fleetstats"
	"github.com/paddockcache/paddock/httpcache"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

// binary builds paddockctl once for the package's tests.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		var err error
		buildDir, err = mkdirTemp()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(buildDir, "paddockctl")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = errors.New(string(out))
		}
	})
	if buildErr != nil {
		t.Fatalf("go build: %v", buildErr)
	}
	return binPath
}

// result is one run of the binary.
type result struct {
	code           int
	stdout, stderr string
}

// ctl runs paddockctl with args against conn (the connection flags).
func ctl(t *testing.T, conn []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), append(args, conn...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("paddockctl %v: %v", args, err)
	}
	return r
}

func (r result) want(t *testing.T, code int) result {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	return r
}

func (r result) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("%v\n%s", err, r.stdout)
	}
}

// app is one process of an application on the server: a Cache, a loader
// of articles and a page cache, publishing its counters.
type app struct {
	cache *paddock.Cache
	art   *paddock.Loader[string]
	pages *httpcache.Cache
	pub   *fleetstats.Publisher
}

func newApp(t *testing.T, client redis.UniversalClient, name string) *app {
	t.Helper()
	s, err := redisstore.New(client)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	c, err := paddock.New(s, paddock.StoreTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	a := &app{cache: c}
	if a.art, err = paddock.NewLoader[string](c, "article"); err != nil {
		t.Fatal(err)
	}
	if a.pages, err = httpcache.New(c); err != nil {
		t.Fatal(err)
	}
	if a.pub, err = fleetstats.New(c, fleetstats.Pages(a.pages), fleetstats.Name(name)); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *app) get(t *testing.T, key string, tags ...string) {
	t.Helper()
	if _, err := a.art.Get(context.Background(), key, func(context.Context) (string, error) { return "body of " + key, nil },
		paddock.TTL(time.Hour), paddock.Stale(time.Hour), paddock.Tags(tags...)); err != nil {
		t.Fatal(err)
	}
}

func (a *app) page(t *testing.T, target string) {
	t.Helper()
	h := a.pages.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "page "+r.URL.Path) }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", target, nil))
}

func TestHelp(t *testing.T) {
	r := ctl(t, nil, "--help").want(t, 0)
	for _, c := range []string{"stats", "get", "invalidate", "mark-stale", "purge-url", "urls", "keys", "versions", "doctor", "watch"} {
		if !strings.Contains(r.stdout, "\n  "+c+" ") || !strings.Contains(r.stdout, "paddockctl "+c) {
			t.Errorf("--help lacks the line or the example of %s", c)
		}
	}
	r = ctl(t, nil, "get", "--help").want(t, 0)
	if !strings.Contains(r.stdout, "Usage: paddockctl get [flags] NS KEY") || !strings.Contains(r.stdout, "-addr") {
		t.Errorf("get --help:\n%s", r.stdout)
	}
	ctl(t, nil).want(t, 2)
	ctl(t, nil, "nope").want(t, 2)
	ctl(t, nil, "get", "--bogus").want(t, 2)
}

func TestCommands(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	conn := []string{"--addr", srv.Socket}
	ctx := context.Background()
	a, b := newApp(t, client, "web-1"), newApp(t, client, "web-2")
	a.get(t, "1", "author:7")
	a.get(t, "1", "author:7") // a hit
	a.get(t, "2", "author:7")
	b.get(t, "3", "author:8")
	a.page(t, "/blog/?page=2")
	b.page(t, "/blog/?page=2")
	b.page(t, "/about")

	t.Run("get", func(t *testing.T) {
		var e struct {
			State       string   `json:"state"`
			Tags        []string `json:"tags"`
			TicketEpoch uint64   `json:"ticket_epoch"`
			Epoch       uint64   `json:"epoch"`
			Size        int      `json:"size"`
			ValueSize   int      `json:"value_size"`
			Value       string   `json:"value"`
			Version     *uint64  `json:"value_version"`
			Age         float64  `json:"age_seconds"`
		}
		ctl(t, conn, "get", "article", "1", "--json", "--value").want(t, 0).json(t, &e)
		if e.State != "fresh" || len(e.Tags) != 1 || e.Tags[0] != "author:7" || e.TicketEpoch != e.Epoch || e.Size <= e.ValueSize ||
			!strings.Contains(e.Value, "body of 1") || e.Age < 0 {
			t.Fatalf("%+v", e)
		}
		// The value is the payload: the loader version it is stored with
		// (0, the default) is apart.
		if e.Version == nil || *e.Version != 0 || e.Value != "body of 1" {
			t.Fatalf("value %q, version %v: want the payload alone and version 0", e.Value, e.Version)
		}
		r := ctl(t, conn, "get", "article", "1", "--value").want(t, 0)
		for _, w := range []string{"state        fresh", "fresh until", "tag          author:7", "ticket       epoch", "(loader version 0)"} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("get lacks %q:\n%s", w, r.stdout)
			}
		}
		ctl(t, conn, "get", "article", "nope", "--json").want(t, 0).json(t, &e)
		if e.State != "missing" {
			t.Fatalf("missing key: %+v", e)
		}
		ctl(t, conn, "get", "article").want(t, 2)
	})

	t.Run("keys", func(t *testing.T) {
		var out struct {
			Keys []struct {
				Key  string   `json:"key"`
				Tags []string `json:"tags"`
			} `json:"keys"`
			Complete bool `json:"complete"`
		}
		ctl(t, conn, "keys", "--match", "article:*", "--json").want(t, 0).json(t, &out)
		if !out.Complete || len(out.Keys) != 3 || out.Keys[0].Key != "article:1" || out.Keys[2].Key != "article:3" {
			t.Fatalf("%+v", out)
		}
		r := ctl(t, conn, "keys", "--match", "page:*").want(t, 0)
		if !strings.Contains(r.stdout, "2 entries (the whole key space walked)") {
			t.Fatalf("pages:\n%s", r.stdout)
		}
		r = ctl(t, conn, "keys", "--limit", "1").want(t, 0)
		if !strings.Contains(r.stdout, "SCAN stopped") {
			t.Fatalf("bounded scan:\n%s", r.stdout)
		}
	})

	t.Run("stats", func(t *testing.T) {
		for _, p := range []*app{a, b} {
			if err := p.pub.Publish(ctx); err != nil {
				t.Fatal(err)
			}
		}
		var out struct {
			Processes  int                      `json:"processes"`
			Namespaces map[string]paddock.Stats `json:"namespaces"`
		}
		ctl(t, conn, "stats", "--json").want(t, 0).json(t, &out)
		if art := out.Namespaces["article"]; out.Processes != 2 || art.Hits != 1 || art.Misses != 3 || art.Loads != 3 {
			t.Fatalf("%+v", out)
		}
		r := ctl(t, conn, "stats", "--per-process").want(t, 0)
		if !strings.Contains(r.stdout, "web-1") || !strings.Contains(r.stdout, "web-2") || !strings.Contains(r.stdout, "(2 processes)") {
			t.Fatalf("per process:\n%s", r.stdout)
		}

		var urls struct {
			Routes []httpcache.RouteStats `json:"routes"`
		}
		ctl(t, conn, "urls", "--json", "--prefix", "/blog").want(t, 0).json(t, &urls)
		if len(urls.Routes) != 2 || urls.Routes[0].Route != "/blog/" || urls.Routes[0].Misses != 1 || urls.Routes[0].Hits != 1 ||
			urls.Routes[1].Route != "(total)" {
			t.Fatalf("urls: %+v", urls.Routes)
		}
		r = ctl(t, conn, "urls").want(t, 0)
		if !strings.Contains(r.stdout, "/about") || !strings.Contains(r.stdout, "HIT RATIO") {
			t.Fatalf("urls:\n%s", r.stdout)
		}
	})

	t.Run("invalidate", func(t *testing.T) {
		var dry struct {
			DryRun   bool     `json:"dry_run"`
			Entries  int      `json:"entries"`
			Complete bool     `json:"complete"`
			Sample   []string `json:"sample"`
		}
		ctl(t, conn, "invalidate", "--tag", "author:7", "--dry-run", "--json").want(t, 0).json(t, &dry)
		if !dry.DryRun || dry.Entries != 2 || !dry.Complete || dry.Sample[0] != "article:1" {
			t.Fatalf("dry run: %+v", dry)
		}
		var e struct{ State string }
		ctl(t, conn, "get", "article", "1", "--json").want(t, 0).json(t, &e)
		if e.State != "fresh" {
			t.Fatalf("a dry run dropped article:1: %s", e.State)
		}
		ctl(t, conn, "invalidate", "--tag", "author:7").want(t, 0)
		ctl(t, conn, "get", "article", "1", "--json").want(t, 0).json(t, &e)
		if e.State != "invalidated" {
			t.Fatalf("after invalidate --tag: %s", e.State)
		}
		ctl(t, conn, "invalidate", "--ns", "article", "--key", "3", "--dry-run", "--json").want(t, 0).json(t, &dry)
		if dry.Entries != 1 {
			t.Fatalf("dry run of a key: %+v", dry)
		}
		ctl(t, conn, "invalidate", "--key", "article:3").want(t, 0)
		ctl(t, conn, "get", "article", "3", "--json").want(t, 0).json(t, &e)
		if e.State != "missing" {
			t.Fatalf("after invalidate --key: %s", e.State)
		}
		ctl(t, conn, "invalidate").want(t, 2)
		ctl(t, conn, "invalidate", "--key", "nonamespace").want(t, 2)
	})

	t.Run("mark-stale and versions", func(t *testing.T) {
		a.get(t, "4", "author:9")
		ctl(t, conn, "mark-stale", "--tag", "author:9").want(t, 0)
		var e struct{ State string }
		ctl(t, conn, "get", "article", "4", "--json").want(t, 0).json(t, &e)
		if e.State != "soft-invalidated" {
			t.Fatalf("after mark-stale: %s", e.State)
		}
		var tv map[string]redisstore.TagVersion
		ctl(t, conn, "versions", "author:9", "author:7", "never", "--json").want(t, 0).json(t, &tv)
		if tv["author:9"].Any == 0 || tv["author:9"].Hard != 0 || tv["author:7"].Hard == 0 || tv["never"].Found {
			t.Fatalf("%+v", tv)
		}
		r := ctl(t, conn, "versions", "author:9").want(t, 0)
		if !strings.Contains(r.stdout, "soft") {
			t.Fatalf("versions:\n%s", r.stdout)
		}
	})

	t.Run("purge-url", func(t *testing.T) {
		var dry struct{ Entries int }
		ctl(t, conn, "purge-url", "/blog/?page=2", "--dry-run", "--json").want(t, 0).json(t, &dry)
		if dry.Entries != 1 {
			t.Fatalf("dry run: %+v", dry)
		}
		ctl(t, conn, "purge-url", "/blog/?page=2").want(t, 0)
		ctl(t, conn, "purge-url", "/blog/?page=2", "--dry-run", "--json").want(t, 0).json(t, &dry)
		var out struct {
			Keys []struct{ Key string } `json:"keys"`
		}
		ctl(t, conn, "keys", "--match", "page:*", "--json").want(t, 0).json(t, &out)
		for _, k := range out.Keys {
			var e struct{ State string }
			ns, key, _ := strings.Cut(k.Key, ":")
			ctl(t, conn, "get", ns, key, "--json").want(t, 0).json(t, &e)
			if strings.Contains(k.Key, "/blog/") && e.State != "invalidated" || strings.Contains(k.Key, "/about") && e.State != "fresh" {
				t.Errorf("%s after purge-url /blog/?page=2: %s", k.Key, e.State)
			}
		}
		ctl(t, conn, "purge-url", "blog").want(t, 2)
		ctl(t, conn, "purge-url", "--prefix", "/", "--dry-run").want(t, 0)
	})
}

func TestWatch(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	a := newApp(t, client, "w")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "watch", "--json", "--count", "2", "--addr", srv.Socket)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	next := func() map[string]any {
		t.Helper()
		if !lines.Scan() {
			t.Fatalf("watch ended early: %v", lines.Err())
		}
		var ev map[string]any
		if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
			t.Fatalf("%v: %s", err, lines.Text())
		}
		return ev
	}
	for ev := next(); ev["event"] != "up"; ev = next() {
	}
	if err := a.cache.Invalidate(ctx, "article:1"); err != nil {
		t.Fatal(err)
	}
	if err := a.cache.InvalidateTags(ctx, "author:7"); err != nil {
		t.Fatal(err)
	}
	ev := next()
	if ev["event"] != "change" || ev["keys"].([]any)[0] != "article:1" {
		t.Fatalf("first change: %v", ev)
	}
	ev = next()
	if ev["tags"].([]any)[0] != "author:7" {
		t.Fatalf("second change: %v", ev)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("watch --count 2 after two changes: %v", err)
	}
}

func TestDoctor(t *testing.T) {
	srv := redistest.Start(t)
	client := srv.Client(t, nil)
	conn := []string{"--addr", srv.Socket}
	newApp(t, client, "d").get(t, "1")
	var out struct {
		Unsafe   bool `json:"unsafe"`
		Findings []struct {
			Level, Check, What string
		} `json:"findings"`
	}
	ctl(t, conn, "doctor", "--json").want(t, 0).json(t, &out)
	checks := map[string]string{}
	for _, f := range out.Findings {
		checks[f.Check] = f.Level
	}
	for _, c := range []string{"version", "maxmemory-policy", "persistence", "epoch"} {
		if checks[c] != "ok" {
			t.Errorf("check %s: %q, want ok (%+v)", c, checks[c], out.Findings)
		}
	}
	if err := client.ConfigSet(context.Background(), "maxmemory-policy", "allkeys-lru").Err(); err != nil {
		t.Fatal(err)
	}
	r := ctl(t, conn, "doctor").want(t, 3)
	if !strings.Contains(r.stdout, "UNSAFE maxmemory-policy") || !strings.Contains(r.stdout, "evict") {
		t.Fatalf("allkeys-lru:\n%s", r.stdout)
	}
	ctl(t, []string{"--addr", filepath.Join(t.TempDir(), "none")}, "doctor").want(t, 1)
}

func TestCluster(t *testing.T) {
	cl := redistest.StartCluster(t, 3)
	client := cl.Client(t)
	conn := []string{"--cluster", "--addr", strings.Join(cl.Addrs, ",")}
	a := newApp(t, client, "c")
	for _, k := range []string{"1", "2", "3", "4", "5", "6"} {
		a.get(t, k, "t")
	}
	var keys struct {
		Keys     []struct{ Key string } `json:"keys"`
		Complete bool                   `json:"complete"`
	}
	ctl(t, conn, "keys", "--match", "article:*", "--json").want(t, 0).json(t, &keys)
	if len(keys.Keys) != 6 || !keys.Complete {
		t.Fatalf("keys on Cluster: %+v", keys)
	}
	var e struct{ State string }
	ctl(t, conn, "get", "article", "5", "--json").want(t, 0).json(t, &e)
	if e.State != "fresh" {
		t.Fatalf("get on Cluster: %s", e.State)
	}
	var doc struct {
		Unsafe   bool `json:"unsafe"`
		Findings []struct{ Level, Check, What string }
	}
	ctl(t, conn, "doctor", "--json").want(t, 0).json(t, &doc)
	found := false
	for _, f := range doc.Findings {
		if f.Check == "cluster" && f.Level == "ok" {
			found = true
		}
		if f.Check == "epoch" && (f.Level != "ok" || !strings.Contains(f.What, "slot epoch markers")) {
			t.Errorf("epoch on Cluster: %+v", f)
		}
	}
	if !found || doc.Unsafe {
		t.Fatalf("doctor on Cluster: %+v", doc)
	}
}
