package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/memstore"
)

var ctx = context.Background()

// newTestSite serves a new site (seeded, on its own memstore) with
// httptest.NewServer, and returns it with a visitor of that server.
func newTestSite(t *testing.T) (*site, *visitor) {
	t.Helper()
	st, err := memstore.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	c, err := paddock.New(st)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := newSite(c, newDB(seed()...))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close) // before the Cache closes
	return s, newVisitor(srv.URL)
}

var seedTitles = []string{
	"Bakery on Mill Street wins a national prize",
	"Rain expected until Thursday",
	"Council approves the new tram line",
}

// expect is a step of a scenario: a response and what it should have been.
func expect(r response, err error, status int, cacheStatus string, headlines ...string) error {
	switch {
	case err != nil:
		return err
	case r.Status != status:
		return fmt.Errorf("status %d, want %d", r.Status, status)
	case !strings.HasPrefix(r.CacheStatus, cacheStatus):
		return fmt.Errorf("Cache-Status %q, want %q...", r.CacheStatus, cacheStatus)
	case headlines != nil && !slices.Equal(r.headlines(), headlines):
		return fmt.Errorf("headlines %q, want %q", r.headlines(), headlines)
	}
	return nil
}

const (
	miss = "paddock; fwd=miss"
	hit  = "paddock; hit"
)

// publishScenario: the homepage is cached; an editor publishes; the next
// request of the homepage shows the article, and the one after is a hit
// again. The article's page, a cached 404 before, is found after.
func publishScenario(s *site, v *visitor) error {
	steps := []func() error{
		func() error { r, err := v.get(ctx, "/"); return expect(r, err, 200, miss, seedTitles...) },
		func() error { r, err := v.get(ctx, "/"); return expect(r, err, 200, hit, seedTitles...) },
		func() error { r, err := v.get(ctx, "/articles/4"); return expect(r, err, 404, miss) },
		func() error { r, err := v.get(ctx, "/articles/4"); return expect(r, err, 404, hit) },
		func() error {
			r, err := v.post(ctx, "/articles", url.Values{"title": {"Harbour reopens"}})
			if err := expect(r, err, http.StatusSeeOther, ""); err != nil {
				return err
			}
			if r.Location != "/" {
				return fmt.Errorf("publish redirects to %q, want /", r.Location)
			}
			return nil
		},
		func() error {
			r, err := v.get(ctx, "/")
			return expect(r, err, 200, miss, append([]string{"Harbour reopens"}, seedTitles...)...)
		},
		func() error {
			r, err := v.get(ctx, "/")
			return expect(r, err, 200, hit, append([]string{"Harbour reopens"}, seedTitles...)...)
		},
		func() error {
			r, err := v.get(ctx, "/articles/4")
			if err := expect(r, err, 200, miss); err != nil {
				return err
			}
			if r.title() != "Harbour reopens" {
				return fmt.Errorf("article 4 is %q", r.title())
			}
			return nil
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
	}
	return nil
}

func TestPublishShowsOnNextRequest(t *testing.T) {
	s, v := newTestSite(t)
	if err := publishScenario(s, v); err != nil {
		t.Fatal(err)
	}
	if n := s.renders.Load(); n != 2 {
		t.Errorf("homepage rendered %d times, want 2 (before and after the publish)", n)
	}
}

func TestRetitleDropsThePagesOfTheRow(t *testing.T) {
	_, v := newTestSite(t)
	for _, p := range []string{"/", "/articles/2", "/articles/1"} {
		if r, err := v.get(ctx, p); err != nil || r.Status != 200 {
			t.Fatalf("GET %s: %v %d", p, err, r.Status)
		}
	}
	r, err := v.post(ctx, "/articles/2", url.Values{"title": {"Rain expected until Friday"}})
	if err := expect(r, err, http.StatusSeeOther, ""); err != nil || r.Location != "/articles/2" {
		t.Fatalf("retitle: %v, Location %q", err, r.Location)
	}
	r, err = v.get(ctx, "/")
	if err := expect(r, err, 200, miss, seedTitles[0], "Rain expected until Friday", seedTitles[2]); err != nil {
		t.Errorf("homepage after the retitle: %v", err)
	}
	r, err = v.get(ctx, "/articles/2")
	if err := expect(r, err, 200, miss); err != nil || r.title() != "Rain expected until Friday" {
		t.Errorf("article 2 after the retitle: %v, title %q", err, r.title())
	}
	// Another row's page did not depend on the row: still a hit.
	r, err = v.get(ctx, "/articles/1")
	if err := expect(r, err, 200, hit); err != nil {
		t.Errorf("article 1 after article 2's retitle: %v", err)
	}
}

// raceScenario: the homepage is cached; an editor publishes X, which
// drops it; a reader's GET / renders it from the rows with X and is slow
// (held on a channel); meanwhile the editor publishes Y. The held render's
// client gets the page it rendered (X, no Y), but that page is never
// stored: the next request renders again and shows Y.
func raceScenario(s *site, v *visitor) error {
	r, err := v.get(ctx, "/")
	if err := expect(r, err, 200, miss, seedTitles...); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	r, err = v.post(ctx, "/articles", url.Values{"title": {"X"}})
	if err := expect(r, err, http.StatusSeeOther, ""); err != nil {
		return fmt.Errorf("publish X: %w", err)
	}

	reading := make(chan struct{}) // the render has read the articles
	release := make(chan struct{}) // lets it finish
	var releaseOnce sync.Once
	defer releaseOnce.Do(func() { close(release) })
	hold := func() { close(reading); <-release }
	s.hold.Store(&hold)
	type got struct {
		r   response
		err error
	}
	held := make(chan got, 1)
	go func() {
		r, err := v.get(ctx, "/")
		held <- got{r, err}
	}()
	<-reading
	renders := s.renders.Load()
	refused := s.cache.Stats()["page"].FillsRefused

	r, err = v.post(ctx, "/articles", url.Values{"title": {"Y"}})
	if err := expect(r, err, http.StatusSeeOther, ""); err != nil {
		return fmt.Errorf("publish Y during the render: %w", err)
	}
	releaseOnce.Do(func() { close(release) })
	g := <-held
	withX := append([]string{"X"}, seedTitles...)
	if err := expect(g.r, g.err, 200, miss, withX...); err != nil {
		return fmt.Errorf("the held render's response: %w", err)
	}

	if urls, err := s.pages.URLs(ctx, ""); err != nil || slices.Contains(urls, "/") {
		return fmt.Errorf("after the held render: the URLs with a stored page are %v, %v", urls, err)
	}

	withY := append([]string{"Y", "X"}, seedTitles...)
	r, err = v.get(ctx, "/")
	if err := expect(r, err, 200, miss, withY...); err != nil {
		return fmt.Errorf("GET / after the publish: %w (the held render's old page was stored)", err)
	}
	if n := s.renders.Load() - renders; n != 1 {
		return fmt.Errorf("GET / after the publish: %d renders, want 1", n)
	}
	r, err = v.get(ctx, "/")
	if err := expect(r, err, 200, hit, withY...); err != nil {
		return fmt.Errorf("GET / again: %w", err)
	}
	if n := s.cache.Stats()["page"].FillsRefused - refused; n != 1 {
		return fmt.Errorf("the held render's fill: %d fills refused, want 1", n)
	}
	for _, row := range s.pages.Stats() {
		if row.Route == "GET /{$}" && (row.Misses != 3 || row.Stored != 2 || row.Reasons["fenced"] != 1) {
			return fmt.Errorf("the homepage's stats %+v: want 3 misses, 2 stored, fenced=1", row)
		}
	}
	return nil
}

func TestPublishRacingRender(t *testing.T) {
	s, v := newTestSite(t)
	if err := raceScenario(s, v); err != nil {
		t.Fatal(err)
	}
}

// TestScenariosCanFail switches off the mechanism each scenario relies on
// and checks that the scenario then fails: with no dependencies (as with
// Django's cache_page, nothing connects the rows to the page) the publish
// never shows; with no fence the held render stores its old page.
func TestScenariosCanFail(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sw       *atomic.Bool
		scenario func(*site, *visitor) error
	}{
		{"NoDeps/publish", &hooks.NoDeps, publishScenario},
		{"NoFence/race", &hooks.NoFence, raceScenario},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Cleanup(hooks.Reset)
			tc.sw.Store(true)
			s, v := newTestSite(t)
			err := tc.scenario(s, v)
			if err == nil {
				t.Fatal("the scenario passed with the switch on: it cannot fail")
			}
			t.Logf("failed as it should: %v", err)
		})
	}
}

// TestWalk runs the example's walk-through.
func TestWalk(t *testing.T) {
	s, v := newTestSite(t)
	var out strings.Builder
	if err := walk(ctx, &out, s, v); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not stored (fills refused: 1)") {
		t.Errorf("the walk-through's race did not refuse one fill:\n%s", out.String())
	}
	if testing.Verbose() {
		io.WriteString(tWriter{t}, out.String())
	}
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
