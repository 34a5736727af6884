// Package fragment caches rendered pieces of html/template pages: Django's
// {% cache %} tag, with Russian-doll dependencies.
//
// A fragment is a named template of a set ({{define "sidebar"}}). Where a
// page would execute it with {{template "sidebar" .}}, it calls
//
//	{{cache .Ctx "sidebar" .User (vary .User.ID) (ttl 600)}}
//
// which returns the sidebar's markup from a [paddock.Loader] of
// [template.HTML], or renders it once, however many requests ask at once,
// and caches it. The key is made of the name, the vary values and a digest
// of the template's source and of every template it calls (through
// {{template}} or a nested cache, transitively): a deploy that changes any
// of them never serves the old markup. [Cache.Render] is the same from Go.
//
// # Index
//
// Set up: [New] on a [paddock.Cache], [Cache.Funcs] before parsing,
// [Cache.Bind] after. Render: the cache template function, or
// [Cache.Render]; inside a fragment, [Dot]. Options: [Namespace], and per
// fragment or as defaults [TTL], [Stale], [Tags], [Vary]. Drop:
// [Cache.Invalidate], [Cache.Key], and [paddock.Cache.InvalidateTags] for
// tags.
//
// # Example
//
//	frags, err := fragment.New(c, fragment.TTL(10*time.Minute))
//	if err != nil { ... }
//	t := template.Must(template.New("page").Funcs(frags.Funcs()).Parse(`
//	{{define "page"}}<h1>Hello, {{.User}}</h1>{{cache .Ctx "links" . (vary .User)}}{{end}}
//	{{define "links"}}<ul>{{range .Data.DB.Links .Ctx .Data.User}}<li>{{.}}</li>{{end}}</ul>{{end}}`))
//	if err := frags.Bind(t); err != nil { ... } // once, before executing
//
//	// In a handler, any number at once, on the one shared t:
//	err = t.ExecuteTemplate(w, "page", Page{Ctx: r.Context(), User: user, DB: db})
//
// where DB.Links reads the user's links through a Loader with the context
// it is given:
//
//	func (db *DB) Links(ctx context.Context, user string) ([]string, error) {
//		return db.links.Get(ctx, user, func(ctx context.Context) ([]string, error) {
//			paddock.Tag(ctx, "links:"+user)
//			return db.queryLinks(ctx, user)
//		})
//	}
//
// The first request for a user renders "links" and caches it; the next
// ones serve it without running the template or DB.Links. After the user
// edits a link, c.InvalidateTags(ctx, "links:"+user) drops the cached
// links, and with them the fragment built from them: the next request
// renders it again. The package's Example runs this.
//
// # Why this shape
//
// Template functions get no context, and html/template has no block
// functions. So the block is a named template, cache is the {{template}}
// action that caches, and the context is an argument: the page passes its
// request's, and a fragment's template is executed with a [Dot] whose Ctx
// is the context of its own render (a load of the Loader) and whose Data
// is the value given. One func map serves every execution, concurrently:
// nothing is rebound per request, which html/template forbids after the
// first execution anyway (it cannot Clone an executed set), and no context
// is kept where two executions could see each other's.
//
// Dot.Ctx being the render's own context is what makes fragments nest: a
// cache call or a cached Get made with it, from the fragment's template or
// from a method of its data, is a nested Get of the render (see the
// paddock package doc). Russian-doll caching follows: the outer fragment
// depends on the inner fragments and on what they read; invalidating a row
// drops every fragment built from it, however deep, and an invalidation
// that lands while the outer fragment renders refuses its fill. A fragment
// rendered inside another load (a page cached by httpcache, whose handler
// runs on the page load's context) makes that load depend on it. The
// block's own data is best read lazily, by methods taking Dot.Ctx, as
// above: read before the call, it is neither a dependency nor saved by a
// cache hit.
//
// [Cache.Bind] exists because the digests and the context check below must
// read the parse trees before html/template rewrites them in place on
// their first execution, and because cache needs its template set.
//
// # Where it is safe
//
// A fragment's template is executed as html/template executes any
// template, starting in HTML text: data in it is escaped for its context
// (a name holding <script> shows as &lt;script&gt;), and the cache stores
// and serves those bytes, escaped. The result is [template.HTML], which
// html/template inserts unchanged only in HTML text, between tags. A cache
// call anywhere else (an attribute, a <script> or <style>, a URL, a
// <textarea> or <title>, a comment) or whose result is piped on or passed
// to another function is refused by [Cache.Bind], with an error wrapping
// [ErrUnsafeContext] that names the place: there html/template would
// escape the markup as text (still nothing injected), and the page would
// show tags instead of the fragment.
//
// The data is not part of the key, exactly as in Django: two renders that
// give the same name and vary values share one entry, and a caller that
// joins another's render gets that render. Vary on everything the markup
// depends on, in particular the user for anything personal: a fragment
// that shows a user's name without (vary .User.ID) shows the first user's
// name to everyone.
//
// The digest covers templates, not Go code: a deploy that changes what a
// method of the data returns, or a template function, does not change it.
// Give [New] a Vary of a build or release identifier to start each deploy
// from empty fragments.
//
// A render that fails (an execution error, a missing template, a failed
// nested Get) returns its error to its callers and caches nothing; the
// next call renders again.
package fragment
