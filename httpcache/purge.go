package httpcache

import (
	"context"
	"net/url"
	"slices"
	"strings"
	"sync"
)

// PurgeURL drops the pages of u, a path with its query as a client asks
// for it ("/blog/?page=2"): every scheme, host, KeyFunc and Vary variant
// of it, in every process sharing the store. The query is read as each
// view reads it (OnlyQuery, IgnoreQuery), so "/blog/?page=2&utm=x" purges
// the page "/blog/?page=2" of a view that ignores utm. It is fenced like
// any invalidation: a render that began before PurgeURL returned never
// stores its page.
func (c *Cache) PurgeURL(ctx context.Context, u string) error {
	tags, err := c.urlTags(u)
	if err != nil {
		return err
	}
	c.urls.forget(func(k string) bool { return slices.Contains(tags, c.urlTag(k)) })
	return c.c.InvalidateTags(ctx, tags...)
}

// MarkStaleURL is the soft [Cache.PurgeURL]: the pages stay servable as
// stale while one request re-renders each.
func (c *Cache) MarkStaleURL(ctx context.Context, u string) error {
	tags, err := c.urlTags(u)
	if err != nil {
		return err
	}
	return c.c.MarkStaleTags(ctx, tags...)
}

// PurgePrefix drops the pages of every URL under a path prefix, in whole
// path segments: "/blog/" is every page under /blog/ (itself included);
// "/blog" is /blog and every page under /blog/, and never /blogroll. It is
// fenced like [Cache.PurgeURL]. PurgePrefix(ctx, "/") drops every page.
func (c *Cache) PurgePrefix(ctx context.Context, prefix string) error {
	tags, err := c.prefixTags(prefix)
	if err != nil {
		return err
	}
	c.urls.forget(func(k string) bool { return underPrefix(k, prefix) })
	return c.c.InvalidateTags(ctx, tags...)
}

// MarkStalePrefix is the soft [Cache.PurgePrefix].
func (c *Cache) MarkStalePrefix(ctx context.Context, prefix string) error {
	tags, err := c.prefixTags(prefix)
	if err != nil {
		return err
	}
	return c.c.MarkStaleTags(ctx, tags...)
}

// urlTags returns the URL tags a purge of u invalidates: u's URL as each
// of the Cache's query rules keys it.
func (c *Cache) urlTags(u string) ([]string, error) {
	ru, err := url.ParseRequestURI(u)
	if err != nil || !strings.HasPrefix(u, "/") {
		return nil, invalid("purge %q: want a path with its query, like /blog/?page=2", u)
	}
	p := ru.EscapedPath()
	c.mu.Lock()
	rules := make([]queryRule, 0, len(c.rules))
	for _, r := range c.rules {
		rules = append(rules, r)
	}
	c.mu.Unlock()
	var tags []string
	for _, r := range rules {
		q, err := r.canonical(ru.RawQuery)
		if err != nil {
			return nil, invalid("purge %q: bad query: %v", u, err)
		}
		tags = append(tags, c.urlTag(pageURL(p, q)))
	}
	slices.Sort(tags)
	return slices.Compact(tags), nil
}

func (c *Cache) prefixTags(prefix string) ([]string, error) {
	if !strings.HasPrefix(prefix, "/") || strings.ContainsAny(prefix, "?#") {
		return nil, invalid("purge prefix %q: want a path, like /blog/", prefix)
	}
	if pu, err := url.Parse(prefix); err == nil {
		prefix = pu.EscapedPath()
	}
	if strings.HasSuffix(prefix, "/") {
		return []string{c.dirTag(prefix)}, nil
	}
	return []string{c.pathTag(prefix), c.dirTag(prefix + "/")}, nil
}

// underPrefix reports whether the page URL u is under prefix, as
// PurgePrefix reads it.
func underPrefix(u, prefix string) bool {
	p, _, _ := strings.Cut(u, "?")
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(p, prefix)
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}

// URLs lists the URLs under prefix (a plain string prefix of the path and
// query) that have a stored page, fresh or stale, sorted: fancy-cache's
// find_urls. It knows the URLs this process rendered or served (up to
// [MaxURLs]), and looks each one's pages up in the store, so a URL purged
// or expired anywhere in the fleet is not listed.
func (c *Cache) URLs(ctx context.Context, prefix string) ([]string, error) {
	cands := c.urls.under(prefix)
	var out []string
	for _, cand := range cands {
		found := false
		for _, k := range cand.keys {
			_, ok, err := c.pages.Peek(ctx, k)
			if err != nil && ctx.Err() != nil {
				return out, ctx.Err()
			}
			if ok {
				found = true
				break
			}
			c.urls.drop(cand.url, k)
		}
		if found {
			out = append(out, cand.url)
		}
	}
	slices.Sort(out)
	return out, nil
}

// maxVariants bounds the keys remembered per URL.
const maxVariants = 16

// urlIndex remembers, per URL, the keys of its pages: a small record per
// URL, bounded in number, never one value holding them all.
type urlIndex struct {
	mu  sync.RWMutex
	max int
	m   map[string][]string
}

func newURLIndex(max int) *urlIndex { return &urlIndex{max: max, m: make(map[string][]string)} }

func (x *urlIndex) add(u, key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	keys, ok := x.m[u]
	if slices.Contains(keys, key) {
		return
	}
	if !ok && len(x.m) >= x.max {
		forgetSome(x.m, x.max)
	}
	if len(keys) >= maxVariants {
		keys = keys[1:]
	}
	x.m[u] = append(slices.Clip(keys), key)
}

// seen adds key for u unless the index has it: a hit on a page this
// process did not render.
func (x *urlIndex) seen(u, key string) {
	x.mu.RLock()
	has := slices.Contains(x.m[u], key)
	x.mu.RUnlock()
	if !has {
		x.add(u, key)
	}
}

func (x *urlIndex) drop(u, key string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	keys := slices.DeleteFunc(slices.Clone(x.m[u]), func(k string) bool { return k == key })
	if len(keys) == 0 {
		delete(x.m, u)
		return
	}
	x.m[u] = keys
}

func (x *urlIndex) forget(match func(u string) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for u := range x.m {
		if match(u) {
			delete(x.m, u)
		}
	}
}

type indexed struct {
	url  string
	keys []string
}

func (x *urlIndex) under(prefix string) []indexed {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var out []indexed
	for u, keys := range x.m {
		if strings.HasPrefix(u, prefix) {
			out = append(out, indexed{u, slices.Clone(keys)})
		}
	}
	return out
}

// PurgeTags returns the tags that [Cache.PurgeURL] of u invalidates, or
// with prefix set, those of [Cache.PurgePrefix] of u: for tools that show
// what a purge would drop before making it (paddockctl purge-url
// --dry-run), or make it through another Cache.
func (c *Cache) PurgeTags(u string, prefix bool) ([]string, error) {
	if prefix {
		return c.prefixTags(u)
	}
	return c.urlTags(u)
}
