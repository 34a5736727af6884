package httpcache

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
)

// queryRule says which query parameters are part of a key.
type queryRule struct {
	only    []string
	hasOnly bool
	ignore  []string
}

// id names the rule, for the set of rules a Cache's views use.
func (q *queryRule) id() string {
	var b strings.Builder
	if q.hasOnly {
		b.WriteString("only")
		for _, n := range q.only {
			b.WriteString(" " + strconv.Quote(n))
		}
	}
	b.WriteString("|ignore")
	for _, p := range q.ignore {
		b.WriteString(" " + strconv.Quote(p))
	}
	return b.String()
}

// keep reports whether the parameter name is part of the key.
func (q *queryRule) keep(name string) bool {
	if q.hasOnly && !slices.Contains(q.only, name) {
		return false
	}
	for _, p := range q.ignore {
		if ok, _ := path.Match(p, name); ok {
			return false
		}
	}
	return true
}

// canonical returns the query raw as keyed: the kept parameters, sorted
// by name, each name's values in their order.
func (q *queryRule) canonical(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", err
	}
	for name := range vals {
		if !q.keep(name) {
			delete(vals, name)
		}
	}
	return vals.Encode(), nil
}

// pageURL is a request's URL as keyed: its escaped path and canonical
// query.
func pageURL(p, query string) string {
	if query == "" {
		return p
	}
	return p + "?" + query
}

// maxKey is the longest key, tag or URL kept as it is; longer ones are
// hashed.
const maxKey = 512

func bounded(s string) string {
	if len(s) <= maxKey {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// baseKey is the part of a request's key that does not depend on Vary:
// method class, scheme, host, URL and the KeyFunc's string.
func baseKey(r *http.Request, u, keyed string) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var b strings.Builder
	b.Grow(len(scheme) + len(r.Host) + len(u) + len(keyed) + 16)
	b.WriteString("GET ")
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(strings.ToLower(r.Host))
	b.WriteString(u)
	if keyed != "" {
		b.WriteString(" key=")
		b.WriteString(strconv.Quote(keyed))
	}
	return b.String()
}

// headerValue is a request's value of a header as keyed: its field lines
// joined by commas.
func headerValue(h http.Header, name string) string {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs, ",")
}

// variantKey is the key of a request with base key base whose page varies
// on names (canonical, sorted).
func variantKey(base string, names []string, h http.Header) string {
	if len(names) == 0 {
		return bounded(base)
	}
	var b strings.Builder
	b.WriteString(base)
	for _, n := range names {
		b.WriteString(" ")
		b.WriteString(n)
		b.WriteString("=")
		b.WriteString(strconv.Quote(headerValue(h, n)))
	}
	return bounded(b.String())
}

// parseVary returns the header names of a response's Vary fields,
// canonical and sorted, and whether one of them is "*".
func parseVary(h http.Header) (names []string, star bool) {
	for _, line := range h.Values("Vary") {
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				star = true
			default:
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), star
}

// union returns the sorted union of a and b, sorted and without
// duplicates themselves.
func union(a, b []string) []string {
	if len(b) == 0 {
		return a
	}
	if len(a) == 0 {
		return b
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

// Purge tags. A page of path /a/b/c with query q carries:
//
//	url:/a/b/c?q      its URL (PurgeURL)
//	path:/a/b/c       its path, any query (PurgePrefix("/a/b/c"))
//	dir:/ dir:/a/ dir:/a/b/   each directory above it (PurgePrefix("/a/"))
//
// each prefixed by the namespace and hashed when long. PurgePrefix matches
// whole path segments, so a purge of /blog never reaches /blogroll.

func (c *Cache) urlTag(u string) string  { return c.ns + ".url:" + bounded(u) }
func (c *Cache) pathTag(p string) string { return c.ns + ".path:" + bounded(p) }
func (c *Cache) dirTag(d string) string  { return c.ns + ".dir:" + bounded(d) }

// pageTags returns the purge tags of a page of path p and URL u.
func (c *Cache) pageTags(p, u string) []string {
	tags := make([]string, 0, 4+strings.Count(p, "/"))
	tags = append(tags, c.urlTag(u), c.pathTag(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' {
			tags = append(tags, c.dirTag(p[:i+1]))
		}
	}
	return tags
}
