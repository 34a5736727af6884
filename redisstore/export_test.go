package redisstore

// ForceCluster makes a Store use the Cluster layout and paths on any
// client: every slot's keys, markers and the sequence then live on one
// server, but each step runs exactly as it would across nodes. Tests use it
// to run the Cluster code against a standalone server.
func ForceCluster() Option {
	return func(c *config) error {
		c.forceCluster = true
		return nil
	}
}

// SlotOf returns the Cluster slot of a cache key or tag.
func SlotOf(s string) uint16 { return slotOf(esc(s)) }

// Esc is the escaping of keys and tags inside hash tags.
var Esc = esc

// EncodeList and DecodeList are the list encoding the scripts read.
var (
	EncodeList = encodeList
	DecodeList = decodeList
)

// SlotTag returns the hash tag of slot's epoch marker.
func SlotTag(slot uint16) string { return slotTags()[slot] }

// ScriptNames maps the SHA-1 of each script to its name.
func ScriptNames() map[string]string {
	return map[string]string{
		lookupScript.Hash():     "lookup",
		fillScript.Hash():       "fill",
		releaseScript.Hash():    "release",
		invalidateScript.Hash(): "invalidate",
		seqScript.Hash():        "seq",
		fenceScript.Hash():      "fence",
		tagCheckScript.Hash():   "tagcheck",
	}
}

// ScriptSources are the sources of every script, for tests that load them
// on every node before counting calls.
func ScriptSources() []string {
	var out []string
	for _, src := range []string{lookupSrc, fillSrc, releaseSrc, invalidateSrc, seqSrc, tagCheckSrc} {
		out = append(out, luaPrelude+src)
	}
	out = append(out, "#!lua flags=allow-cross-slot-keys\n"+luaPrelude+fenceSrc)
	return out
}

// Subscribed starts s's subscription if it is not running and returns a
// channel closed once its subscription to the wake channel is confirmed.
func Subscribed(s *Store) <-chan struct{} {
	h := s.hub
	h.mu.Lock()
	defer h.mu.Unlock()
	h.startLocked()
	return h.subscribed
}

// Channels returns the names of s's wake and feed channels.
func Channels(s *Store) (wake, feed string) { return s.hub.wakeCh, s.hub.feedCh }
