package main

import (
	"context"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// visitor is a reader or an editor of the site: a real HTTP client that
// does not follow redirects (so that a publish and the homepage after it
// are two requests to look at).
type visitor struct {
	base string
	hc   *http.Client
}

func newVisitor(base string) *visitor {
	return &visitor{base: base, hc: &http.Client{
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is what a visitor got.
type response struct {
	Status      int
	CacheStatus string // the Cache-Status header
	Location    string
	ETag        string
	Body        string
}

// headlines are the titles the homepage lists, in order.
func (r response) headlines() []string {
	var out []string
	for _, m := range headlineRE.FindAllStringSubmatch(r.Body, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

var headlineRE = regexp.MustCompile(`<li><a href="/articles/\d+">([^<]*)</a></li>`)

// title is the page's <h1>.
func (r response) title() string {
	m := titleRE.FindStringSubmatch(r.Body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

var titleRE = regexp.MustCompile(`<h1>([^<]*)</h1>`)

func (v *visitor) get(ctx context.Context, path string, header ...string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, v.base+path, nil)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	return v.do(req)
}

func (v *visitor) post(ctx context.Context, path string, form url.Values) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, v.base+path, strings.NewReader(form.Encode()))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return v.do(req)
}

func (v *visitor) do(req *http.Request) (response, error) {
	resp, err := v.hc.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{
		Status:      resp.StatusCode,
		CacheStatus: resp.Header.Get("Cache-Status"),
		Location:    resp.Header.Get("Location"),
		ETag:        resp.Header.Get("ETag"),
		Body:        string(b),
	}, nil
}
