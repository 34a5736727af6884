package paddock

import (
	"sync"
	"testing"
)

// A gate lets work enter until it is shut, and its idle channel closes
// once it is shut and the work that entered has ended: at once if none
// had, and never before.
func TestGate(t *testing.T) {
	g := newGate()
	if !g.enter() || !g.enter() {
		t.Fatal("an open gate refused work")
	}
	if !g.shut() {
		t.Fatal("the first shut reported the gate shut already")
	}
	if g.shut() {
		t.Error("a second shut reported that it shut the gate")
	}
	if g.enter() {
		t.Fatal("a shut gate let work enter")
	}
	g.exit()
	select {
	case <-g.idle:
		t.Fatal("idle closed while work was under way")
	default:
	}
	g.exit()
	<-g.idle

	empty := newGate()
	empty.shut()
	<-empty.idle // no work: idle at once
}

// Work that races the shut either enters before it, and is waited for,
// or is refused; idle is closed once, when the last of it ends.
func TestGateRace(t *testing.T) {
	for range 200 {
		g := newGate()
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			running int
			late    bool
		)
		for range 8 {
			wg.Go(func() {
				for range 50 {
					if !g.enter() {
						return
					}
					mu.Lock()
					running++
					mu.Unlock()
					select {
					case <-g.idle:
						mu.Lock()
						late = true
						mu.Unlock()
					default:
					}
					mu.Lock()
					running--
					mu.Unlock()
					g.exit()
				}
			})
		}
		g.shut()
		<-g.idle
		mu.Lock()
		if running != 0 || late {
			t.Fatalf("idle closed with %d pieces of work running (late: %v)", running, late)
		}
		mu.Unlock()
		wg.Wait()
	}
}
