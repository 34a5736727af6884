// Package proptest checks paddock's ordering guarantee against adversarial
// interleavings. It holds tests only; docs/guarantees.md states the
// guarantee and maps each part to the test that checks it.
//
// A rapid state machine drives a small world: a "database" of versioned
// rows, two or three nodes (one paddock.Cache each) over one shared store,
// and loads that rapid steps one at a time (begin, read the row, finish or
// fail), so that rapid, not the scheduler, decides how loads interleave with
// writes, invalidations, Sets, the passing of time, node crashes and store
// outages. Each check runs in a testing/synctest bubble; after every action
// the machine waits for every goroutine to settle and checks its invariants
// against a model of what each Get may return.
//
// Some actions aim at narrow races. A lookup's reply can be slow: the store
// answers, and the node hears the answer some actions later (or loses it
// when time passes), so that an invalidation and other Gets land in
// between. Background refreshes fail often. A Get may arrive on a load's
// node just before the load returns, and join its flight. A Set may name a
// tag its row lacks, and race an invalidation between its lookup and its
// fill, or inside the store's fill (memstore with hooks.FillTagGap). An
// invalidation that fails binds its own node at once and the other nodes
// once the store has been reachable again for a second, as the Cache
// retries it. An invalidation may land while a load of its key is held
// and another Get of the key follow it, on any node.
//
// In half the checks the rows have layers on top (nested.go): a list
// built from rows a and b and a page built from the list, each on its own
// Loader of the node's Cache, whose loads read their inputs with nested
// Gets, Peeks and GetManys, one Step at a time, so that invalidations of
// inner keys and of the rows' tags race the outer and the inner loads at
// every point. Outer values carry the values they were built from, and the
// invariants follow them down to the rows.
//
// The same machine runs on every store: a store is a backend (open a store,
// move its clock, flush or restart it), and its test is one line
// (TestMemstore, TestRedis, TestRedisCluster). TestCanFail switches off one
// safety mechanism at a time (internal/hooks) and checks that the machine
// then finds a counterexample.
//
// The page machine (pages_test.go) checks package httpcache the same
// way. Two or three processes, each a paddock Cache with its own
// httpcache.Cache, share one store (memstore, or a real redis-server) and
// serve a small site in process. Its handler blocks twice, before it
// reads its row and before it writes its response, so that rapid
// interleaves renders with requests (GET and HEAD, with drawn values of
// the headers the pages vary on), writes of the rows each followed by a
// purge (by URL, by prefix, by the tag the handler names, or by the key
// of the row a page read through a nested Get; hard or soft), changes of
// the Vary a page sends, renders that set a cookie, and the passing of
// time. A render writes into its response what it saw, and the machine
// judges every response by it: P1, a response was rendered for a request
// with the same values of every header it varies on; P2, a request that
// begins after a purge of its URL gets no page from a render older than
// the purge, nor one built from a row older than the write the purge
// followed (after a soft purge: such a page only served stale, inside its
// window); P3, a response that set a cookie reaches only the request it
// was rendered for; P4, a GET gets its page's body, also when a HEAD
// rendered it. TestCanFail has a row for each switch these catch
// (PageIgnoresVary, PageSharesPrivate, NoFence, IgnoreLoadTags, NoDeps),
// and TestPageChecks gives each check a response that breaks it.
//
// The near-cache machine (near_test.go, TestRedisNearCache) runs two or
// three processes with paddock.NearCache, each over its own redisstore
// Store, on a real redis-server, without a bubble: the feeds' messages
// arrive on their own, and the machine learns where each process stands
// by tapping its feed between the Store and the Cache. Its invariant N1:
// a Get never returns a value older than a change that had reached its
// process when it began (in the process that made it: whose call had
// returned), with Gets racing invalidations and every subscription killed
// among the actions. TestCanFail's FeedDropsChanges row checks that a feed
// that loses changes without going down breaks it.
//
// A store of another module (one with a heavy dependency, in a module of
// its own) runs the same machine from its own tests: [Run] with a
// [Backend] whose [Env] holds the store and its controls, [Outside] for a
// store that does network I/O, and [Main] as the package's TestMain, so
// that the can-fail runs can turn one mechanism off in a copy of its test
// binary.
//
// Failing cases are saved under testdata/rapid and replayed first on every
// run. A long run: go test ./proptest -run TestMemstore -rapid.checks=100000.
package proptest
