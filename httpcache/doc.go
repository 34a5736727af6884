// Package httpcache caches whole HTTP responses on a [paddock.Loader]:
// Django's cache_page and CacheMiddleware, with django-fancy-cache's key
// callables, purge by URL, post-processing and per-URL stats, and without
// their races. A page gets everything a paddock value gets: one render per
// key per fleet, fills fenced against purges, stale-while-revalidate,
// stale-if-error, tags, and dependencies on the cached values its handler
// reads.
//
//	pages, err := httpcache.New(cache, httpcache.TTL(5*time.Minute))
//	mux.Handle("GET /{$}", pages.Handler(home))                  // cache_page
//	handler := pages.Middleware(httpcache.OnlyQuery("page"))(mux) // CacheMiddleware
//
// # What a request does
//
//  1. A request that is not a GET or HEAD, asks for a Range, upgrades the
//     connection, carries Cookie or Authorization (unless [KeyFunc] opts it
//     in, or the view varies on that header), or for which [KeyFunc]
//     returns false, goes to the handler uncached.
//  2. Its key is the method class (HEAD shares GET's page), scheme, host,
//     escaped path, the query with its parameters sorted and filtered
//     ([OnlyQuery], [IgnoreQuery]), KeyFunc's string, and the request's
//     values of the headers the page varies on: [VaryHeaders], and those the
//     URL's responses name in Vary.
//  3. A stored page is served with Age and Cache-Status (RFC 9211), or a
//     304 Not Modified if the request's If-None-Match or If-Modified-Since
//     matches its ETag (derived from the body when the handler sets none)
//     or Last-Modified. HEAD gets the header without the body.
//  4. Otherwise the handler renders the page once for every request
//     coalesced on the key, here or, on a shared store, in any process. It
//     runs on the load's context: paddock.Tag(r.Context(), ...) tags the
//     page, and every cached Get it makes with r.Context() makes the page
//     depend on that entry, so invalidating a row drops every page that
//     showed it.
//  5. The page is stored unless the response says it must not be: see
//     below. The client whose request rendered it gets its bytes as the
//     handler writes them when nothing needs the whole body first (a 2xx
//     response and no [PostProcess] or [PostProcessAlways]); coalesced
//     clients get the complete copy.
//
// # What is not stored
//
// Served but not stored: responses with Set-Cookie, Cache-Control no-store,
// private or no-cache, Vary: *, a status outside [Statuses] (206 never), a
// body over [MaxBodySize], trailers, and handlers that flush (a stream) or
// hijack the connection. Of these, a response that must not be shared
// (Set-Cookie, no-store, private, no-cache, Vary: *, a stream) never
// reaches another request: the requests coalesced with it are released at
// once and render for themselves ([paddock.Private]). A 5xx response is a
// failed render: a page inside its stale-if-error window is served in its
// place.
//
// The response's Cache-Control sets the page's windows when it says:
// s-maxage or max-age (else Expires) replaces [TTL];
// stale-while-revalidate and stale-if-error replace [Stale] and
// [StaleIfError]; must-revalidate turns both off. Requests' Cache-Control
// is ignored: a client cannot make the server render.
//
// # Purge
//
// [Cache.PurgeURL], [Cache.PurgePrefix] and their soft forms drop pages by
// URL in every process sharing the store, through tags every page carries:
// no URL list is read or written. They are fenced: a render that began
// before a purge returned never stores its page. [Cache.URLs] lists the
// URLs with a stored page. Tags the handler names, and dependencies, are
// purged with the paddock Cache's InvalidateTags and Invalidate.
//
// # Vary
//
// A page records the headers it varies on and the rendering request's
// values of them, and is served only to a request with the same values:
// two requests that differ in a varied header never get each other's
// page, whatever the process knew of the URL's Vary when it looked up.
// Headers the handler reads but does not name in Vary (or in [VaryHeaders])
// are not in the key: name them, or a page rendered for one value is
// served for all.
//
// # Freshness of pages built from cached values
//
// A page is never stored fresher than the cached values its handler read
// with r.Context(): a page with a 15-minute TTL built from a list cached for
// 5 minutes stays fresh 5 minutes (Cache-Status shows ttl=299), and goes
// when the list is invalidated. Give the queries TTLs at least as long as
// the pages', and let invalidation, not expiry, keep them current.
//
// # Cache-Status of a streamed response
//
// The client whose request renders a page gets its header before the page
// is stored, so its Cache-Status says "paddock; fwd=miss; fwd-status=200"
// and, when the header already shows why, why the page will not be stored;
// whether the fill was accepted shows in [Cache.Stats] and on the next
// request. Every other response's Cache-Status says stored or why not.
//
// # Stats from the command line
//
// [Cache.StatsHandler] serves the table as text to curl
// (curl -H 'Accept: text/plain' http://host/debug/pages), and
// [Cache.WriteStats] writes it for a program's own command. The counters
// are this process's.
//
// # Values are shared
//
// A [Page] given to [PostProcess] is the one stored; one given to
// [PostProcessAlways] is a copy, made for each response.
package httpcache
