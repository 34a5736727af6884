package httpcache_test

import (
	"net/http"
	"slices"
	"testing"
)

// A page rendered for a client that got it streamed is a miss like any
// other: if its fill was accepted, URLs lists its URL; if a purge fenced
// it, the stats count it as not stored, and why.
func TestStreamedRenderBookkeeping(t *testing.T) {
	hc := newCache(t, nil)
	started, release := make(chan struct{}), make(chan struct{})
	h := &counting{serve: func(n int64, w http.ResponseWriter, r *http.Request) {
		if n == 2 { // the render the purge races
			close(started)
			<-release
		}
		body(n, w, r)
	}}
	v := hc.Handler(h)
	url, client := server(t, v)

	resp, _ := get(t, client, "GET", url+"/a")
	if got, err := hc.URLs(ctx, ""); err != nil || !slices.Equal(got, []string{"/a"}) {
		t.Errorf("after a stored, streamed render (%s): URLs %v, %v; want [/a]", status(resp.Header), got, err)
	}

	if err := hc.PurgeURL(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	done := make(chan string)
	go func() {
		resp, _ := get(t, client, "GET", url+"/a")
		done <- status(resp.Header)
	}()
	<-started
	if err := hc.PurgeURL(ctx, "/a"); err != nil {
		t.Fatal(err)
	}
	close(release)
	cs := <-done
	row := hc.Stats()[0]
	if row.Route != "/a" || row.Misses != 2 || row.Stored != 1 || row.Reasons["fenced"] != 1 {
		t.Errorf("after a stored render and a fenced one (%s): stats %+v; want 2 misses, 1 stored, fenced=1", cs, row)
	}
}
