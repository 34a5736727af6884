package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// floor-redis is not a library: it is the least a fleet needs to load a
// cold key once, written by hand so that the fleet scenario has a floor
// measured on the same machine in the same run. Per process, the callers
// of one key share one flight (singleflight). The flight's leader sends
// one script: the value if the key has one, else SET key:lease NX PX.
// The winner loads, then in one pipelined round trip sets the value,
// publishes it on key:wake and drops the lease. The other processes'
// leaders wait for that message, which carries the value (no GET after
// it). Each process subscribes to *:wake once, when it is built, so a
// flight's subscription exists before its claim and no wake is lost; a
// flight registers for its key's wake before it claims. A flight that
// hears nothing within the lease's PX claims again (polling: the value,
// or the lease of a holder that is gone). No fences, tags, stale windows
// or local cache.

const (
	// floorLease is the lease's PX, and how long a waiter waits for a
	// wake before it claims again.
	floorLease = 2 * time.Second
	// floorWake is the suffix of a key's wake channel; the lease is the
	// key with floorLeaseSuffix.
	floorWake        = ":wake"
	floorLeaseSuffix = ":lease"
)

// floorClaim returns the key's value, or 1 if this caller took the lease,
// or 0 if another holds it.
var floorClaim = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then return v end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return 1 end
return 0
`)

func init() {
	register(Lib{
		Name:      "floor-redis",
		Module:    "— (hand-written, in bench)",
		Redis:     true,
		Peer:      true,
		FleetOnly: true,
		Notes: "not a library: the least a fleet needs, written by hand as a floor for the fleet scenario. " +
			"singleflight per process; the flight sends one script (the value, else `SET key:lease NX PX`); " +
			"the winner loads, then one pipeline `SET key value PX ttl`, `PUBLISH key:wake value`, `DEL key:lease`; " +
			"the others wait on a `PSUBSCRIBE *:wake` made when the process starts (the value travels in the message), " +
			"claiming again after the lease's PX if nothing came. No fences, tags, stale window or local cache",
		New: func(cfg Config) (Cache, error) { return newFloor(cfg, floorLease) },
	})
}

// floorCache is the floor-redis adapter.
type floorCache struct {
	rdb   *redis.Client
	ps    *redis.PubSub
	g     singleflight.Group
	ttl   time.Duration
	lease time.Duration
	// waiting, if not nil, is called when a flight has lost its claim
	// and starts to wait for a wake (a test's hook).
	waiting func(key string)

	mu      sync.Mutex
	waiters map[string]chan []byte // a flight per key waits for its wake
	closing chan struct{}
	done    chan struct{}
}

// newFloor builds a floor cache whose lease lasts lease: it connects,
// loads the claim script and subscribes before it returns.
func newFloor(cfg Config, lease time.Duration) (*floorCache, error) {
	if cfg.Redis == "" {
		return nil, errNoRedis
	}
	ctx := context.Background()
	rdb := newRedisClient(cfg.Redis, 0)
	// Load the script (and open a pooled connection) now, not in the
	// first round.
	if err := floorClaim.Load(ctx, rdb).Err(); err != nil {
		rdb.Close()
		return nil, err
	}
	ps := rdb.PSubscribe(ctx, "*"+floorWake)
	if _, err := ps.Receive(ctx); err != nil { // the subscription's confirmation
		ps.Close()
		rdb.Close()
		return nil, err
	}
	c := &floorCache{
		rdb: rdb, ps: ps, ttl: cfg.TTL, lease: lease,
		waiters: make(map[string]chan []byte),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.listen()
	return c, nil
}

// listen hands each wake to the flight waiting for its key, if any. A
// message is the value prefixed by 'v', or "x" when the holder's load
// failed (claim again).
func (c *floorCache) listen() {
	defer close(c.done)
	for {
		m, err := c.ps.ReceiveMessage(context.Background())
		if err != nil {
			select {
			case <-c.closing:
				return
			case <-time.After(10 * time.Millisecond): // the connection is redialled by the next Receive
			}
			continue
		}
		key := strings.TrimSuffix(m.Channel, floorWake)
		c.mu.Lock()
		ch := c.waiters[key]
		c.mu.Unlock()
		if ch == nil {
			continue
		}
		var v []byte
		if strings.HasPrefix(m.Payload, "v") {
			v = []byte(m.Payload[1:])
		}
		select {
		case ch <- v:
		default: // a wake was delivered already
		}
	}
}

func (c *floorCache) Get(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	v, err, _ := c.g.Do(key, func() (any, error) { return c.flight(ctx, key, load) })
	if err != nil {
		return nil, err
	}
	return v.([]byte), nil
}

// flight is one process's flight for key: claim, then load or wait.
func (c *floorCache) flight(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	ch := make(chan []byte, 1)
	c.mu.Lock()
	c.waiters[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiters, key)
		c.mu.Unlock()
	}()
	keys := []string{key, key + floorLeaseSuffix}
	for {
		r, err := floorClaim.Run(ctx, c.rdb, keys, c.lease.Milliseconds()).Result()
		if err != nil {
			return nil, err
		}
		switch r := r.(type) {
		case string:
			return []byte(r), nil
		case int64:
			if r == 1 {
				return c.fill(ctx, key, load)
			}
		default:
			return nil, fmt.Errorf("floor-redis: claim returned %T", r)
		}
		if c.waiting != nil {
			c.waiting(key)
		}
		t := time.NewTimer(c.lease)
		select {
		case v := <-ch:
			t.Stop()
			if v != nil {
				return v, nil
			}
			// The holder's load failed: claim again.
		case <-t.C:
			// No wake within the lease: claim again.
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// fill runs the load under the lease, then in one round trip writes the
// value, wakes the fleet with it and drops the lease.
func (c *floorCache) fill(ctx context.Context, key string, load LoadFunc) ([]byte, error) {
	v, err := load(ctx)
	wake := key + floorWake
	if err != nil {
		_, perr := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			// The lease goes first: a woken waiter's claim must find it gone.
			p.Del(ctx, key+floorLeaseSuffix)
			p.Publish(ctx, wake, "x")
			return nil
		})
		return nil, errors.Join(err, perr)
	}
	msg := make([]byte, 1+len(v))
	msg[0] = 'v'
	copy(msg[1:], v)
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, key, v, c.ttl)
		p.Publish(ctx, wake, msg)
		p.Del(ctx, key+floorLeaseSuffix)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (c *floorCache) Invalidate(ctx context.Context, key string) error {
	return c.rdb.Del(ctx, key).Err()
}

func (c *floorCache) Close() error {
	close(c.closing)
	err := c.ps.Close()
	<-c.done
	return errors.Join(err, c.rdb.Close())
}
