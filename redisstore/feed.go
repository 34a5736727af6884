package redisstore

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock/internal/hooks"
	"github.com/paddockcache/paddock/store"
)

// The Store's subscription. The scripts publish on two channels of the
// prefix (classic pub/sub, which Redis Cluster carries to every node):
//
//	<prefix>{_}:wake  the ends of leases that a lookup found held: a fill,
//	                  a release, or an invalidation that broke the lease
//	<prefix>{_}:feed  every change that replaces or drops entries out of
//	                  turn: an invalidation (its keys and tags) and a Set
//	                  fill (its key)
//
// A lookup that asks for the lease and finds it held marks the lease as
// waited for (the key <prefix>{K}:w, which lasts as long as the lease);
// the script that ends the lease publishes a wake-up only if it finds the
// mark. An uncontended fill or release publishes nothing: it deletes a
// mark that is not there.
//
// A message is a run of items, each a kind and a name: 'k' a key changed,
// 't' a tag changed, 'w' a key whose lease may have ended. The name is
// the hash tag of the store's key names for it (the key or tag with '%',
// '{' and '}' escaped, see esc), length-prefixed in decimal:
// "k8:page:a%7Bt3:art" is the key "page:a{" and the tag "art". A 'w' item
// of a fill may be followed by an 'f' item, whose "name" is the sequence
// when the fill was made, ':', and the entry it wrote (see
// Store.WatchFill); a reader that does not know the kind stops there,
// after the 'w' item.
//
// One subscription per Store (one connection, to any node on Cluster)
// serves both, started by the first Watch or Listen: the wake channel
// first, the feed channel too once a Cache listens. It runs its own
// receive loop on go-redis's low-level Receive, which returns the errors
// that go-redis's Channel hides (its Channel drops messages when its
// buffer stays full, and says nothing when a connection is lost): every
// error ends the subscription, and a new one is made.
//
// Up and down (the store.Feed contract): the feed is up from the
// confirmation of its SUBSCRIBE (Redis registers the subscription before
// it confirms it, so every change made after the confirmation arrives
// has its message sent on this connection) until the loop learns that
// the connection failed. A connection that fails loudly (closed by the
// server, CLIENT KILL, a restart: a read error) is seen at once. One
// that goes silent (a network that holds its bytes, a frozen server) is
// seen by the health check: after FeedTimeout/2 without a byte the loop
// sends a PING, and FeedTimeout/2 later without a byte the subscription
// counts as lost. TCP keeps the order of the bytes, so a message that is
// held holds the PONG behind it: a message sent on the connection is
// read, or the feed reports down, within FeedTimeout of the last byte the
// loop read before it.

// The channels' names, after the prefix. The scripts build the same names
// from the prefix of a key name (see luaFeed).
const (
	wakeChannel = "{_}:wake"
	feedChannel = "{_}:feed"
)

// DefaultFeedTimeout is the default of [FeedTimeout].
const DefaultFeedTimeout = 2 * time.Second

// FeedTimeout sets how long the Store's subscription (the wake-ups of
// waiters and the feed of near caches, see [Store.Listen]) may go without
// hearing from Redis before it counts as lost: after d/2 of silence it
// sends a PING, and d/2 later it gives up, reports the feed down (a near
// cache is then dropped) and subscribes again. It bounds how long a
// connection that has gone silent, rather than failed, can hide that
// changes no longer arrive. Default [DefaultFeedTimeout]; at least 10 ms.
func FeedTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond {
			return invalid("FeedTimeout must be at least 10ms, got %v", d)
		}
		c.feedTimeout = d
		return nil
	}
}

var (
	_ store.Waker   = (*Store)(nil)
	_ store.Handoff = (*Store)(nil)
	_ store.Feed    = (*Store)(nil)
)

// hub is a Store's subscription and the callers that wait on it.
type hub struct {
	client  redis.UniversalClient
	timeout time.Duration
	wakeCh  string
	feedCh  string

	// mu guards the subscription's state and the watches.
	mu       sync.Mutex
	running  bool // run was started; done is closed when it ends
	closed   bool
	wantFeed bool          // a Listen was made: subscribe to the feed channel too
	ps       *redis.PubSub // the current subscription; nil between two
	cancel   context.CancelFunc
	done     chan struct{}
	// watches are the callers waiting for a lease, by the key's escaped
	// hash tag (the name in a 'w' item), woken by its next wake-up or by
	// the next confirmation of the wake channel.
	watches map[string][]*watch
	// subscribed is closed when the wake channel's subscription is
	// confirmed, and replaced when it is lost (for tests).
	subscribed chan struct{}

	// lmu guards the listeners and feedUp, and is held while they are
	// called: one call at a time, and none after cancel returns.
	lmu       sync.Mutex
	listeners []*listener
	feedUp    bool
	drops     int // changes seen with hooks.FeedDropsChanges on
}

// A watch is one caller's wait for a key's wake-up: ch is closed by it,
// and fill, set before, is the 'f' item the wake-up carried ("" if none).
type watch struct {
	ch   chan struct{}
	fill string
}

// wake closes w.ch, with the fill it carried. The caller holds h.mu.
func (w *watch) wake(fill string) {
	w.fill = fill
	close(w.ch)
}

type listener struct {
	changed func(keys, tags []string)
	up      func(bool)
}

func newHub(client redis.UniversalClient, prefix string, timeout time.Duration) *hub {
	return &hub{
		client:     client,
		timeout:    timeout,
		wakeCh:     prefix + wakeChannel,
		feedCh:     prefix + feedChannel,
		subscribed: make(chan struct{}),
	}
}

// Watch implements [store.Waker]: the channel is closed when a fill or a
// release of key (by any process), or an invalidation that names it, ends
// a lease that a lookup found held after the subscription was confirmed;
// and when the subscription is confirmed again after it was lost (a
// wake-up may have been missed meanwhile). The first Watch starts the
// Store's subscription. After [Store.Close] the channel is never closed.
func (s *Store) Watch(key string) (wake <-chan struct{}, stop func()) {
	w, stop := s.hub.watch(esc(key))
	return w.ch, stop
}

// WatchFill implements [store.Handoff]: it is [Store.Watch], and the
// wake-up of a fill that Redis accepted carries the entry it wrote
// (standalone and Sentinel, for entries up to [HandoffSize]), which
// handed returns as the lookup script would have answered a lookup made
// in the fill's place: fresh, with the entry and the sequence then, by
// the rules the hit path checks an entry with (it parses, is not
// soft-invalidated, names its tags' keys, and its fresh instant is still
// ahead of the Store's reading of the server's clock). The fill script
// checked the key's version and the versions of every tag of the entry
// in the same atomic step, so at that instant the entry was what a
// lookup would have served. A wake-up of a release, an invalidation or a
// refused fill carries nothing, nor does one on Cluster, where the fill
// script cannot see the sequence or the tags in other slots.
func (s *Store) WatchFill(key string) (wake <-chan struct{}, handed func() (store.Lookup, bool), stop func()) {
	w, stop := s.hub.watch(esc(key))
	return w.ch, func() (store.Lookup, bool) { return s.handed(key, w) }, stop
}

// watch adds a watch of the key whose escaped hash tag is name; stop
// removes it. The first one starts the subscription.
func (h *hub) watch(name string) (w *watch, stop func()) {
	w = &watch{ch: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return w, func() {}
	}
	if h.watches == nil {
		h.watches = make(map[string][]*watch)
	}
	h.watches[name] = append(h.watches[name], w)
	h.startLocked()
	return w, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		ws := h.watches[name]
		for i, x := range ws {
			if x == w {
				ws = append(ws[:i], ws[i+1:]...)
				break
			}
		}
		if len(ws) == 0 {
			delete(h.watches, name)
		} else {
			h.watches[name] = ws
		}
	}
}

// handed is the answer that the wake-up of w carried for key, if any (see
// WatchFill).
func (s *Store) handed(key string, w *watch) (store.Lookup, bool) {
	select {
	case <-w.ch: // w.fill was set before
	default:
		return store.Lookup{}, false
	}
	if w.fill == "" || s.cluster {
		return store.Lookup{}, false
	}
	i := strings.IndexByte(w.fill, ':')
	if i < 0 {
		return store.Lookup{}, false
	}
	seq, ok := parseNum(w.fill[:i])
	if !ok {
		return store.Lookup{}, false
	}
	v, ok := parseEntry([]byte(w.fill[i+1:])) // a copy: the caller owns the value
	if !ok || v.soft() {
		return store.Lookup{}, false
	}
	kn := s.layout.key(key)
	tags := decodeTags(v.tags)
	if local, _ := s.splitTags(kn.slot, tags); encodeList(local) != string(v.tagKeys) {
		return store.Lookup{}, false
	}
	until := v.fresh
	if at, early := v.refreshAt(); early {
		until = at
	}
	now, ok := s.nodeFor(context.Background(), kn.entry).now()
	if !ok || v.created >= until || now+s.offset() >= until {
		return store.Lookup{}, false
	}
	s.notePlan(key, kn, &v)
	return store.Lookup{
		Entry:  v.storeEntry(tags),
		State:  store.StateFresh,
		Ticket: store.Ticket{Epoch: v.epoch, Seq: seq},
		Now:    time.UnixMicro(v.created),
	}, true
}

// Listen implements [store.Feed]: changed gets the keys and tags of every
// invalidation and the key of every Set fill, made by any Store on the
// same Redis and prefix, as their messages arrive; up(false) comes before
// Listen returns and whenever the subscription is lost, up(true) when its
// subscription to the feed channel is confirmed (at once, inside Listen,
// if it already is). See the package doc for the bound on how late a
// change can arrive. The first Listen subscribes to the feed channel
// (reconnecting the Store's subscription if it was running for wake-ups
// only). After [Store.Close] up(true) never comes.
func (s *Store) Listen(changed func(keys, tags []string), up func(bool)) (cancel func()) {
	h := s.hub
	l := &listener{changed: changed, up: up}
	h.lmu.Lock()
	h.listeners = append(h.listeners, l)
	l.up(false)
	if h.feedUp {
		l.up(true)
	}
	h.lmu.Unlock()

	h.mu.Lock()
	var restart *redis.PubSub
	if !h.closed {
		if !h.wantFeed {
			// Subscribed to the wake channel only, if at all: start again
			// with both. (Adding the channel on the open connection would
			// write to it here, on the caller's goroutine.)
			h.wantFeed, restart = true, h.ps
		}
		h.startLocked()
	}
	h.mu.Unlock()
	if restart != nil {
		_ = restart.Close() // outside h.mu: it waits for a dial in progress
	}
	return func() {
		h.lmu.Lock()
		defer h.lmu.Unlock()
		for i, x := range h.listeners {
			if x == l {
				h.listeners = append(h.listeners[:i], h.listeners[i+1:]...)
				break
			}
		}
	}
}

// startLocked starts the subscription's loop unless it runs. The caller
// holds h.mu.
func (h *hub) startLocked() {
	if h.running || h.closed {
		return
	}
	h.running = true
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan struct{})
	go h.run(ctx)
}

// close stops the subscription and waits for its loop to end.
func (h *hub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	running, ps, done := h.running, h.ps, h.done
	if running {
		h.cancel()
	}
	h.mu.Unlock()
	if ps != nil {
		_ = ps.Close() // ends a Receive in progress
	}
	if running {
		<-done
	}
}

// run subscribes, receives until the subscription fails, and subscribes
// again, until close. Retries back off from 0 (the first one is
// immediate) to a second, and start from 0 again after a confirmation.
func (h *hub) run(ctx context.Context) {
	defer close(h.done)
	var backoff time.Duration
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return
		}
		ps := h.client.Subscribe(ctx) // no channel yet: no I/O
		h.ps = ps
		chans := []string{h.wakeCh}
		if h.wantFeed {
			chans = append(chans, h.feedCh)
		}
		h.mu.Unlock()

		err := ps.Subscribe(ctx, chans...)
		if err == nil {
			err = h.receive(ctx, ps, &backoff)
		}
		_ = err // every way out of receive is a lost subscription
		_ = ps.Close()
		h.lost()

		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), time.Second)
	}
}

// receive reads ps until it fails, and returns the error. An idle read
// that times out sends a PING; a second one in a row is the end.
func (h *hub) receive(ctx context.Context, ps *redis.PubSub, backoff *time.Duration) error {
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, h.timeout/2)
		if err != nil {
			if ne := net.Error(nil); !pinged && errors.As(err, &ne) && ne.Timeout() {
				if err := ps.Ping(ctx); err != nil {
					return err
				}
				pinged = true
				continue
			}
			return err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				*backoff = 0
				h.confirmed(m.Channel)
			}
		case *redis.Message:
			h.deliver(m.Channel, m.Payload)
		}
	}
}

// confirmed acts on the confirmation of the subscription to ch.
func (h *hub) confirmed(ch string) {
	switch ch {
	case h.wakeCh:
		// Wake-ups may have been missed before: every waiter looks again.
		h.mu.Lock()
		for _, ws := range h.watches {
			for _, w := range ws {
				w.wake("")
			}
		}
		clear(h.watches)
		select {
		case <-h.subscribed:
		default:
			close(h.subscribed)
		}
		h.mu.Unlock()
	case h.feedCh:
		h.lmu.Lock()
		h.feedUp = true
		for _, l := range h.listeners {
			l.up(true)
		}
		h.lmu.Unlock()
	}
}

// lost reports the end of a subscription: the feed is down until the next
// confirmation.
func (h *hub) lost() {
	h.mu.Lock()
	h.ps = nil
	select {
	case <-h.subscribed:
		h.subscribed = make(chan struct{})
	default:
	}
	h.mu.Unlock()
	h.lmu.Lock()
	if h.feedUp {
		h.feedUp = false
		for _, l := range h.listeners {
			l.up(false)
		}
	}
	h.lmu.Unlock()
}

// deliver hands the items of a message on channel ch to the waiters and
// the listeners. A message of the feed that does not parse may have named
// anything: the listeners hear the feed go down and come back, which
// drops what a lost change would have dropped.
func (h *hub) deliver(ch, p string) {
	var (
		keys, tags []string
		woke       []woken
	)
	ok := true
	for len(p) > 0 {
		i := strings.IndexByte(p, ':')
		if i < 2 {
			ok = false
			break
		}
		n, err := strconv.Atoi(p[1:i])
		if err != nil || n < 0 || n > len(p)-i-1 {
			ok = false
			break
		}
		name := p[i+1 : i+1+n]
		switch p[0] {
		case 'k':
			keys = append(keys, unesc(name))
		case 't':
			tags = append(tags, unesc(name))
		case 'w':
			woke = append(woke, woken{name: name})
		case 'f':
			// The entry of the fill that woke the key of the 'w' item
			// before.
			if len(woke) > 0 {
				woke[len(woke)-1].fill = name
			}
		default:
			ok = false
		}
		p = p[i+1+n:]
	}
	if len(woke) > 0 {
		h.mu.Lock()
		for _, k := range woke {
			for _, w := range h.watches[k.name] {
				w.wake(k.fill)
			}
			delete(h.watches, k.name)
		}
		h.mu.Unlock()
	}
	if ch != h.feedCh || ok && len(keys)+len(tags) == 0 {
		return
	}
	h.lmu.Lock()
	defer h.lmu.Unlock()
	if !ok {
		if h.feedUp {
			for _, l := range h.listeners {
				l.up(false)
				l.up(true)
			}
		}
		return
	}
	if hooks.FeedDropsChanges.Load() {
		h.drops++
		if h.drops%2 == 1 {
			return
		}
	}
	for _, l := range h.listeners {
		l.changed(keys, tags)
	}
}

// woken is a 'w' item of a wake-up: the key's escaped hash tag, and the
// 'f' item that followed it, if any.
type woken struct{ name, fill string }

var unescaper = strings.NewReplacer("%25", "%", "%7B", "{", "%7D", "}")

// unesc reverses esc.
func unesc(s string) string {
	if s == "%" {
		return ""
	}
	if !strings.Contains(s, "%") {
		return s
	}
	return unescaper.Replace(s)
}

// luaFeed are the scripts' part of the wake-ups and the feed (see above).
// A key name the store writes starts with the prefix, then a hash tag in
// braces: the channels are named from the prefix, the items from the tag.
const luaFeed = `
local function feeditem(kind, name)
  local t = string.match(name, '{([^}]*)}')
  return kind .. #t .. ':' .. t
end

-- feedpub publishes items, if any, on channel which ('wake' or 'feed') of
-- the prefix of key name name.
local function feedpub(name, which, items)
  if #items > 0 then
    redis.call('PUBLISH', string.match(name, '^([^{]*){') .. '{_}:' .. which, table.concat(items))
  end
end

-- waiting marks lease key lk, found held, as waited for: the mark lasts
-- as long as the lease.
local function waiting(lk)
  local ms = redis.call('PTTL', lk)
  if ms > 0 then redis.call('SET', string.sub(lk, 1, -2) .. 'w', '1', 'PX', ms) end
end

-- woken ends the mark of lease key lk and reports whether there was one.
local function woken(lk)
  return redis.call('DEL', string.sub(lk, 1, -2) .. 'w') == 1
end

-- ended ends a fill or a release of the key of lease key lk: its waiters
-- are woken, and a Set (set) is published on the feed. A fill's wake-up
-- may carry its entry: the item carry, which follows the key's 'w' item.
local function ended(lk, set, carry)
  if set then feedpub(lk, 'feed', {feeditem('k', lk)}) end
  if woken(lk) then feedpub(lk, 'wake', {feeditem('w', lk), carry}) end
end

-- changed ends an invalidation whose KEYS hold, from first, nk keys (their
-- entry, version, lease and fresh marker names) and then its tags: the
-- feed hears them all, the waiters of the keys whose leases it broke are
-- woken.
local function changed(keys, first, nk)
  local items, wake = {}, {}
  for i = 0, nk - 1 do
    local lk = keys[first + 4 * i + 2]
    items[#items + 1] = feeditem('k', lk)
    if woken(lk) then wake[#wake + 1] = feeditem('w', lk) end
  end
  for i = first + 4 * nk, #keys do items[#items + 1] = feeditem('t', keys[i]) end
  feedpub(keys[first], 'feed', items)
  feedpub(keys[first], 'wake', wake)
end
`
