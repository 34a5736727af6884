package redisstore_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/paddockcache/paddock"
	"github.com/paddockcache/paddock/internal/redistest"
	"github.com/paddockcache/paddock/redisstore"
	"github.com/paddockcache/paddock/store"
)

// storeCalls runs every Store operation on key "k" and returns each
// one's error with the prefix its text must start with (up to a '|',
// which tells apart the calls of one prefix). The batch calls are made on
// "k" and "k2", whose every error must name its own key.
func storeCalls(ctx context.Context, s *redisstore.Store) map[string]error {
	fill := &store.Fill{Value: []byte("v"), Ticket: store.Ticket{Epoch: 1, Seq: 1}, Lease: 1,
		TTL: time.Minute, Tags: []string{"a", "b", "k"}}
	set := &store.Fill{Value: []byte("v"), Ticket: store.Ticket{Epoch: 1, Seq: 1}, TTL: time.Minute, Set: true}
	req := store.LookupRequest{Lease: 1, LeaseTTL: time.Minute}
	_, lerr := s.Lookup(ctx, "k", req)
	_, ferr := s.Fill(ctx, "k", fill)
	_, serr := s.Fill(ctx, "k", set)
	_, lerrs := s.LookupMany(ctx, []string{"k", "k2"}, []store.LookupRequest{req, req})
	_, ferrs := s.FillMany(ctx, []string{"k", "k2"}, []*store.Fill{fill, set})
	return map[string]error{
		`redisstore: lookup "k": `:                lerr,
		`redisstore: fill "k": `:                  ferr,
		`redisstore: fill "k": |set`:              serr,
		`redisstore: lookup "k": |LookupMany`:     errAt(lerrs, 0),
		`redisstore: lookup "k2": |LookupMany`:    errAt(lerrs, 1),
		`redisstore: fill "k": |FillMany`:         errAt(ferrs, 0),
		`redisstore: fill "k2": |FillMany of set`: errAt(ferrs, 1),
		`redisstore: release "k": `:               s.Release(ctx, "k", 1),
		`redisstore: invalidate: `:                s.Invalidate(ctx, store.Invalidation{Keys: []string{"k"}, Tags: []string{"a", "b"}}),
	}
}

func errAt(errs []error, i int) error {
	if i < len(errs) {
		return errs[i]
	}
	return nil
}

// checkErrors checks that each error names the store and the operation
// once, at the start, and wraps its cause.
func checkErrors(t *testing.T, errs map[string]error, cause func(error) bool) {
	t.Helper()
	for prefix, err := range errs {
		prefix, _, _ = strings.Cut(prefix, "|")
		switch {
		case err == nil:
			t.Errorf("%s: no error", prefix)
		case !strings.HasPrefix(err.Error(), prefix):
			t.Errorf("%q does not start with %q", err, prefix)
		case strings.Count(err.Error(), "redisstore") != 1:
			t.Errorf("%q names the store more than once", err)
		case strings.Count(err.Error(), strings.Fields(prefix)[1]) != 1:
			t.Errorf("%q names the operation more than once", err)
		case !cause(err):
			t.Errorf("%q does not wrap its cause", err)
		default:
			t.Logf("%v", err)
		}
	}
}

func TestErrorTexts(t *testing.T) {
	srv := redistest.Start(t)
	for _, layout := range []struct {
		name string
		opts []redisstore.Option
	}{{"standalone", nil}, {"cluster", []redisstore.Option{redisstore.ForceCluster()}}} {
		t.Run("layout="+layout.name, func(t *testing.T) {
			t.Run("closed", func(t *testing.T) {
				s := newStore(t, srv.Client(t, nil), layout.opts...)
				_ = s.Close()
				checkErrors(t, storeCalls(t.Context(), s), func(err error) bool { return errors.Is(err, paddock.ErrClosed) })
			})
			t.Run("timeout", func(t *testing.T) {
				client := srv.Client(t, func(o *redis.Options) { o.MaxRetries = -1 })
				s := newStore(t, client, layout.opts...)
				if _, err := s.Lookup(t.Context(), "warm", store.LookupRequest{}); err != nil {
					t.Fatal(err)
				}
				srv.Pause(t)
				defer srv.Resume(t)
				ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
				defer cancel()
				// The context's deadline, or the socket deadline go-redis
				// set from it.
				checkErrors(t, storeCalls(ctx, s), func(err error) bool {
					return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
				})
			})
			t.Run("refused", func(t *testing.T) {
				client := redis.NewClient(&redis.Options{Addr: deadAddr(t), ContextTimeoutEnabled: true, MaxRetries: -1})
				t.Cleanup(func() { _ = client.Close() })
				s := newStore(t, client, layout.opts...)
				checkErrors(t, storeCalls(t.Context(), s), func(err error) bool {
					var ne *net.OpError
					return errors.As(err, &ne)
				})
			})
		})
	}
	t.Run("options", func(t *testing.T) {
		_, err := redisstore.New(srv.Client(t, nil), redisstore.Prefix("{"))
		checkErrors(t, map[string]error{"redisstore: new: ": err}, func(err error) bool { return errors.Is(err, paddock.ErrInvalidOption) })
	})
}

// deadAddr returns a loopback address where nothing listens: connections
// are refused at once.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}
