package httpcache_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/paddockcache/paddock"

	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// TestOnRedis runs the behaviour tests again with each Cache on a real
// Redis (each test under its own key prefix). The tests that need
// synctest's clock stay on memstore; TestFleet covers several Caches.
func TestOnRedis(t *testing.T) {
	srv := redistest.Start(t)
	var n atomic.Int64
	backend = func(t testing.TB) store.Store {
		s, err := redisstore.New(srv.Client(t, nil), redisstore.Prefix(fmt.Sprintf("onredis%d:", n.Add(1))))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The tests check behaviour, not timeouts: store calls get a bound a
	// busy machine under -race never reaches (1000 concurrent requests
	// would otherwise trip the 250 ms default and load without the store).
	backendOptions = []paddock.Option{paddock.StoreTimeout(10 * time.Second), paddock.LeaseTTL(time.Minute)}
	defer func() { backend, backendOptions = nil, nil }()
	for _, tc := range []struct {
		name string
		f    func(*testing.T)
	}{
		{"ColdURLRendersOnce", TestColdURLRendersOnce},
		{"RenderRacingPurgeIsNotStored", TestRenderRacingPurgeIsNotStored},
		{"Refusals", TestRefusals},
		{"SetCookieNeverShared", TestSetCookieNeverShared},
		{"Vary", TestVary},
		{"VaryHeaders", TestVaryHeaders},
		{"HEAD", TestHEAD},
		{"Conditional", TestConditional},
		{"QueryRules", TestQueryRules},
		{"KeyFunc", TestKeyFunc},
		{"PostProcess", TestPostProcess},
		{"StreamOverTheNetwork", TestStreamOverTheNetwork},
		{"ClientGoneMidStream", TestClientGoneMidStream},
		{"HandlerPanics", TestHandlerPanics},
		{"PurgeURL", TestPurgeURL},
		{"PurgeURLFollowsTheQueryRules", TestPurgeURLFollowsTheQueryRules},
		{"PurgePrefix", TestPurgePrefix},
		{"MarkStale", TestMarkStale},
		{"URLs", TestURLs},
		{"Stats", TestStats},
		{"Statuses", TestStatuses},
		{"TagsAndDependencies", TestTagsAndDependencies},
		{"Middleware", TestMiddleware},
	} {
		t.Run(tc.name, tc.f)
	}
}
