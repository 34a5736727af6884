package proptest

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"
)

// The page machine's invariants. Each response is judged when it
// arrives, by what its render wrote into it (X-Page, and the body of a
// GET) against the model's record of that render and of the purges that
// returned before the request began:
//
//	P1 vary     the render saw the request's value of every header the
//	            response names in Vary
//	P2 purge    after a hard purge that covers the URL: no page from a
//	            render that began before the purge, nor (if the purge
//	            reaches what the page reads its row from) one older than
//	            the row at the purge; after a soft one: such a page only
//	            served stale, inside its window, and a page built from a
//	            row older than it never as a fresh hit
//	P3 private  a response that set a cookie reaches only the request
//	            whose render set it
//	P4 head     a GET gets its page's body, never an empty one (HEADs
//	            render GET pages)
//
// P0 is the model's own consistency (a response of no known render).

// checkResponse checks the response request q got. The caller holds m.mu.
func (m *pageMachine) checkResponse(q *pageReq) {
	if q.code != http.StatusOK {
		m.violate("P0 model: a response other than 200", "%v got %d", q, q.code)
		return
	}
	info, err := url.ParseQuery(q.header.Get(hdrPage))
	rid, _ := strconv.Atoi(info.Get("render"))
	rd := m.renders[rid]
	if err != nil || rd == nil || info.Get("url") != q.url {
		m.violate("P0 model: a response of no known render of its URL", "%v got X-Page %q", q, q.header.Get(hdrPage))
		return
	}
	if has := len(q.header.Values("Set-Cookie")) > 0; has != rd.cookie {
		m.violate("P0 model: a response's Set-Cookie is not its render's", "%v got Set-Cookie %q from %v", q, q.header.Values("Set-Cookie"), rd)
		return
	}
	ver, _ := strconv.Atoi(info.Get("v"))
	m.countResponse(q, rd)
	m.checkBody(q)
	m.checkVary(q, info, rd)
	m.checkPrivate(q, rd)
	m.checkPurges(q, rd, ver)
}

// countResponse tallies what makes each invariant bite: a response of
// another request's render that varies on a header, a cookie, a GET
// served what a HEAD's render made, a purge to judge against.
func (m *pageMachine) countResponse(q *pageReq, rd *pageRender) {
	if rd.req != q.id && len(varyOf(q.header)) > 0 {
		m.count("P1: a varied page of another request's render")
	}
	if rd.cookie {
		m.count("P3: a response with a cookie")
	}
	if o := m.reqByID[rd.req]; q.method == http.MethodGet && o != nil && o.method == http.MethodHead {
		m.count("P4: a GET served a HEAD's render")
	}
	for _, p := range m.purges {
		if p.ok && p.step < q.start && p.covers(q.url) {
			m.count(fmt.Sprintf("P2: a response after a purge of its URL, soft %v", p.soft))
			break
		}
	}
}

// checkBody checks P4: a GET gets the body of the page whose header it
// got, which is never empty.
func (m *pageMachine) checkBody(q *pageReq) {
	if q.method != http.MethodGet {
		return
	}
	switch {
	case q.body == "":
		m.violate("P4 head: a GET got an empty body", "%v got X-Page %q and no body", q, q.header.Get(hdrPage))
	case q.body != pageBody(q.header.Get(hdrPage)):
		m.violate("P4 head: a GET got a body other than its page's", "%v got X-Page %q and body %q", q, q.header.Get(hdrPage), q.body)
	}
}

// checkVary checks P1: for every header the response varies on, the
// render saw the request's value.
func (m *pageMachine) checkVary(q *pageReq, info url.Values, rd *pageRender) {
	names := varyOf(q.header)
	for _, name := range names {
		var want, saw string
		switch name {
		case hdrLang:
			want, saw = q.lang, info.Get("lang")
		case hdrTheme:
			want, saw = q.theme, info.Get("theme")
		default:
			continue
		}
		if want != saw {
			m.violate("P1 vary: a response was rendered for a request with another value of a header it varies on",
				"%v got [%s] from %v, which saw %s=%q (the response varies on %v)",
				q, q.header.Get("Cache-Status"), rd, name, saw, names)
			return
		}
	}
}

// checkPrivate checks P3: a response that set a cookie reaches only the
// request it was rendered for.
func (m *pageMachine) checkPrivate(q *pageReq, rd *pageRender) {
	if rd.cookie && rd.req != q.id {
		m.violate("P3 private: a response that set a cookie reached a request other than the one it was rendered for",
			"%v got [%s] with Set-Cookie %q from %v", q, q.header.Get("Cache-Status"), q.header.Values("Set-Cookie"), rd)
	}
}

// checkPurges checks P2 against every purge that returned nil before the
// request began and covers its URL.
func (m *pageMachine) checkPurges(q *pageReq, rd *pageRender, ver int) {
	hit, stale := cacheStatusOf(q.header)
	row := pageRow(q.url)
	for _, p := range m.purges {
		if !p.ok || p.step >= q.start || !p.covers(q.url) {
			continue
		}
		old := rd.begin < p.step
		older := p.coversData(q.url) && ver < p.vers[row]
		switch {
		case !p.soft && old:
			m.violate("P2 purge: a request that began after a purge got a page from a render that began before it",
				"%v got [%s] from %v, which began before the %v", q, q.header.Get("Cache-Status"), rd, p)
			return
		case !p.soft && older:
			m.violate("P2 purge: a request that began after a purge got a page older than the row at the purge",
				"%v got [%s] row %s v%d from %v, older than v%d at the %v", q, q.header.Get("Cache-Status"), row, ver, rd, p.vers[row], p)
			return
		case p.soft && old && !stale:
			m.violate("P2 purge: a request that began after a soft purge got a page from before it, not as stale",
				"%v got [%s] from %v, which began before the %v: only stale is allowed", q, q.header.Get("Cache-Status"), rd, p)
			return
		case p.soft && old && !q.startAt.Before(rd.finishAt.Add(ttl+staleFor)):
			m.violate("P2 purge: a request that began after a soft purge got a page from before it past its stale window",
				"%v (at %v) got [%s] from %v, stored at %v: stale until %v at the latest", q, m.since(q.startAt),
				q.header.Get("Cache-Status"), rd, m.since(rd.finishAt), m.since(rd.finishAt.Add(ttl+staleFor)))
			return
		case p.soft && older && hit && !stale:
			m.violate("P2 purge: a request that began after a soft purge got as a fresh hit a page built from a row older than it",
				"%v got [%s] row %s v%d from %v, older than v%d at the %v", q, q.header.Get("Cache-Status"), row, ver, rd, p.vers[row], p)
			return
		}
	}
}

// varyOf returns the header names a response's Vary fields name,
// canonical.
func varyOf(h http.Header) []string {
	var names []string
	for _, line := range h.Values("Vary") {
		for _, f := range strings.Split(line, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// cacheStatusOf reads the response's Cache-Status (the last, httpcache's):
// whether it was served from a stored page, and whether as stale.
func cacheStatusOf(h http.Header) (hit, stale bool) {
	vs := h.Values("Cache-Status")
	if len(vs) == 0 {
		return false, false
	}
	for _, p := range strings.Split(vs[len(vs)-1], ";") {
		switch strings.TrimSpace(p) {
		case "hit":
			hit = true
		case "detail=stale":
			stale = true
		}
	}
	return hit, hit && stale
}

// cacheStatusKind is the response's Cache-Status without its numbers,
// for the tally.
func cacheStatusKind(h http.Header) string {
	vs := h.Values("Cache-Status")
	if len(vs) == 0 {
		return "(none)"
	}
	var kept []string
	for _, p := range strings.Split(vs[len(vs)-1], ";") {
		p = strings.TrimSpace(p)
		if p == "paddock" || strings.HasPrefix(p, "ttl=") || strings.HasPrefix(p, "fwd-status=") {
			continue
		}
		kept = append(kept, p)
	}
	return strings.Join(kept, "; ")
}

// Check runs after every action and reports the first violation the
// action's responses raised.
func (m *pageMachine) Check(t *rapid.T) {
	m.mu.Lock()
	v := m.violations
	m.mu.Unlock()
	if len(v) == 0 {
		return
	}
	// One call site per invariant, as in machine.Check: rapid shrinks a
	// counterexample only into one that fails at the same place.
	t.Logf("history (step, time since the check began, event):\n%s", m.historyString())
	switch label, _, _ := strings.Cut(v[0], " "); label {
	case "P1":
		t.Fatalf("%s", v[0])
	case "P2":
		t.Fatalf("%s", v[0])
	case "P3":
		t.Fatalf("%s", v[0])
	case "P4":
		t.Fatalf("%s", v[0])
	default:
		t.Fatalf("%s", v[0])
	}
}

// TestPageChecks feeds the page machine's checks one made-up response
// per branch, each broken in one way (and one that is not), and checks
// that each is reported under its invariant: the can-fail runs reach P1,
// P2 and P3 through httpcache and the core, and this reaches every
// branch, P4's too, which no switch turns off.
func TestPageChecks(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := &pageNode{id: 1}
	info := func(rd *pageRender) string {
		return url.Values{
			"render": {strconv.Itoa(rd.id)}, "req": {strconv.Itoa(rd.req)}, "url": {rd.url},
			"v": {strconv.Itoa(rd.ver)}, "lang": {rd.lang}, "theme": {rd.theme},
		}.Encode()
	}
	// Render 1 of /p/a, for request 10 (en), began at step 1, read v1,
	// stored at t0. Render 2 of /d/a, for request 10, began at step 5
	// (after the purges), read v1.
	r1 := &pageRender{id: 1, node: n, url: "/p/a", req: 10, lang: "en", begin: 1, ver: 1, state: renderDone, finishAt: t0}
	r2 := &pageRender{id: 2, node: n, url: "/d/a", req: 10, begin: 5, ver: 1, state: renderDone, finishAt: t0}
	hard := func(kind, arg string) *pagePurge {
		return &pagePurge{step: 3, kind: kind, arg: arg, ok: true, node: n, vers: map[string]int{"a": 2, "b": 1}}
	}
	soft := func(kind, arg string) *pagePurge { p := hard(kind, arg); p.soft = true; return p }
	for _, c := range []struct {
		name    string
		rd      *pageRender
		cookie  bool // the render set a cookie
		method  string
		req     int
		lang    string
		at      time.Duration // when the request began, after t0
		status  string
		vary    string
		body    string // "-": the page's
		purge   *pagePurge
		wantErr string // the label of the violation, "" for none
	}{
		{name: "ok", rd: r1, method: "GET", req: 11, lang: "en", status: "paddock; hit; ttl=5", vary: hdrLang, body: "-"},
		{name: "ok/head", rd: r1, method: "HEAD", req: 11, status: "paddock; hit; ttl=5"},
		{name: "ok/soft-stale", rd: r1, method: "GET", req: 11, at: ttl, status: "paddock; hit; ttl=0; detail=stale", body: "-", purge: soft("url", "/p/a")},
		{name: "ok/soft-dep-miss", rd: r2, method: "GET", req: 10, status: "paddock; fwd=miss; fwd-status=200; stored", body: "-", purge: soft("dep", "a")},
		{name: "ok/purge-elsewhere", rd: r1, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: "-", purge: hard("prefix", "/d")},
		{name: "empty-get", rd: r1, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: "", wantErr: "P4"},
		{name: "other-body", rd: r1, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: pageBody(info(r2)), wantErr: "P4"},
		{name: "vary", rd: r1, method: "HEAD", req: 11, lang: "fr", status: "paddock; hit; ttl=5", vary: hdrTheme + ", " + hdrLang, wantErr: "P1"},
		{name: "cookie", rd: r1, cookie: true, method: "GET", req: 11, lang: "en", status: "paddock; fwd=miss; fwd-status=200; collapsed", body: "-", wantErr: "P3"},
		{name: "purged", rd: r1, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: "-", purge: hard("tag", "a"), wantErr: "P2"},
		{name: "purged/data", rd: r2, method: "GET", req: 11, status: "paddock; fwd=miss; fwd-status=200; stored", body: "-", purge: hard("dep", "a"), wantErr: "P2"},
		{name: "soft/not-stale", rd: r1, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: "-", purge: soft("prefix", "/p/"), wantErr: "P2"},
		{name: "soft/past-window", rd: r1, method: "GET", req: 11, at: ttl + staleFor, status: "paddock; hit; ttl=-20; detail=stale", body: "-", purge: soft("url", "/p/a"), wantErr: "P2"},
		{name: "soft/data-hit", rd: r2, method: "GET", req: 11, status: "paddock; hit; ttl=5", body: "-", purge: soft("tag", "a"), wantErr: "P2"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rd := *c.rd
			rd.cookie = c.cookie
			m := &pageMachine{start: t0, renders: map[int]*pageRender{rd.id: &rd}, reqByID: map[int]*pageReq{}}
			if c.purge != nil {
				m.purges = append(m.purges, c.purge)
			}
			h := http.Header{}
			h.Set(hdrPage, info(&rd))
			h.Set("Cache-Status", c.status)
			if c.vary != "" {
				h.Set("Vary", c.vary)
			}
			if c.cookie {
				h.Set("Set-Cookie", "sid=1-10")
			}
			body := c.body
			if body == "-" {
				body = pageBody(info(&rd))
			}
			q := &pageReq{id: c.req, node: n, url: rd.url, method: c.method, lang: c.lang, start: 4, startAt: t0.Add(c.at),
				done: true, code: http.StatusOK, header: h, body: body}
			m.checkResponse(q)
			switch {
			case c.wantErr == "" && len(m.violations) > 0:
				t.Fatalf("reported %q for a response that keeps every invariant", m.violations)
			case c.wantErr != "" && (len(m.violations) != 1 || !strings.HasPrefix(m.violations[0], c.wantErr+" ")):
				t.Fatalf("reported %q, want one violation of %s", m.violations, c.wantErr)
			}
		})
	}
}
