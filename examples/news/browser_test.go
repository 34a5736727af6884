package main

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/paddockcache/paddock/internal/browsertest"
)

var screenshotTo = flag.String("screenshot", "", "write the stats page's screenshot to this file too (docs/stats-page.png is made with ../../docs/stats-page.png)")

// TestStatsPageInBrowser serves the site, makes traffic of every kind the
// stats count, and loads /debug/pages in headless Chromium: the DOM it
// built has a row per route with the counts of Stats, and the screenshot
// is a PNG of the window's size.
func TestStatsPageInBrowser(t *testing.T) {
	browser := browsertest.Require(t)
	s, v := newTestSite(t)

	// A fenced render of the homepage, publishes, hits.
	if err := raceScenario(s, v); err != nil {
		t.Fatal(err)
	}
	home, err := v.get(ctx, "/")
	if err != nil {
		t.Fatal(err)
	}
	etag := ""
	for _, step := range []struct{ path, header, value string }{
		{"/", "", ""}, {"/", "", ""},
		{"/", "Cookie", "session=1"}, // bypassed: cookie
		{"/", "If-None-Match", ""},   // a 304 from the cache
		{"/articles/1", "", ""}, {"/articles/1", "", ""}, {"/articles/2", "", ""},
		{"/articles/99", "", ""}, {"/articles/99", "", ""}, // a cached 404
	} {
		value := step.value
		if step.header == "If-None-Match" {
			if etag = home.ETag; etag == "" {
				t.Fatal("the homepage has no ETag")
			}
			value = etag
		}
		var hdr []string
		if step.header != "" {
			hdr = []string{step.header, value}
		}
		if _, err := v.get(ctx, step.path, hdr...); err != nil {
			t.Fatal(err)
		}
	}
	stats := s.pages.Stats()

	url := v.base + "/debug/pages"
	dom := browsertest.DOM(t, browser, url)
	if !strings.Contains(dom, "<tbody>") {
		t.Errorf("the DOM has no <tbody>: not a browser's DOM?\n%s", dom)
	}
	rows := browsertest.TableRows(dom)
	header := []string{"Route", "Hits", "Stale", "Misses", "Stored", "Coalesced", "Bypassed", "304", "Hit ratio", "Not cached, why"}
	if len(rows) == 0 || !slices.Equal(rows[0], header) {
		t.Fatalf("the table's header is %q, want %q\n%s", rows[:min(1, len(rows))], header, dom)
	}
	if len(rows)-1 != len(stats) {
		t.Errorf("the table has %d rows, Stats %d", len(rows)-1, len(stats))
	}
	for i, st := range stats {
		want := []string{st.Route, fmt.Sprint(st.Hits), fmt.Sprint(st.Stale), fmt.Sprint(st.Misses),
			fmt.Sprint(st.Stored), fmt.Sprint(st.Coalesced), fmt.Sprint(st.Bypassed), fmt.Sprint(st.NotModified),
			fmt.Sprintf("%.1f%%", 100*st.HitRatio()), reasons(st.Reasons)}
		if i+1 >= len(rows) || !slices.Equal(rows[i+1], want) {
			got := []string(nil)
			if i+1 < len(rows) {
				got = rows[i+1]
			}
			t.Errorf("row %d is %q, want %q", i+1, got, want)
		}
	}
	// The traffic above, as the page shows it.
	byRoute := map[string][]string{}
	for _, r := range rows[1:] {
		if len(r) == len(header) {
			byRoute[r[0]] = r
		}
	}
	if r := byRoute["GET /{$}"]; r == nil || r[7] != "1" || r[9] != "cookie=1 fenced=1" {
		t.Errorf("the homepage's row is %q: want one 304, and cookie=1 fenced=1", r)
	}
	if r := byRoute["GET /articles/{id}"]; r == nil || r[1] != "2" || r[3] != "3" {
		t.Errorf("the articles' row is %q: want 2 hits, 3 misses", r)
	}

	const width, height = 1040, 240
	b, _ := browsertest.Screenshot(t, browser, url, width, height)
	browsertest.SaveCopy(t, b, *screenshotTo)
}

// reasons formats a row's reasons as the page does: "cookie=1 fenced=1".
func reasons(m map[string]int64) string {
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	return strings.Join(parts, " ")
}
