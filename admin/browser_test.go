package admin_test

import (
	"flag"
	"fmt"
	"image"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/paddockcache/paddock/internal/browsertest"

	"github.com/paddockcache/paddock"
)

var screenshotTo = flag.String("screenshot", "", "write the page's screenshot to this file too (the README's is made with ../docs/admin-page.png)")

func hasRow(rows [][]string, want []string) bool {
	return slices.ContainsFunc(rows, func(r []string) bool { return slices.Equal(r, want) })
}

// TestPageInBrowser loads the page, after real traffic, in headless
// Chromium: the DOM the browser built has the tables' rows and the
// chart's lines, and the screenshot is a PNG of the window's size that
// is not blank.
func TestPageInBrowser(t *testing.T) {
	browser := browsertest.Require(t)
	s := newSite(t, paddock.Audit(1e9), paddock.AuditSample(1), paddock.AuditSettle(0)) // checks at most 1 ns apart: every hit is checked
	s.traffic(t)
	for range 3 { // more samples, for a line worth drawing
		for _, p := range []string{"/articles/1", "/articles/3", "/articles/1"} {
			s.get(t, p)
		}
		s.h.Sample()
	}
	if err := s.c.Close(); err != nil { // waits for the audit's checks; the page still serves
		t.Fatal(err)
	}
	url := s.srv.URL + "/debug/paddock"

	dom := browsertest.DOM(t, browser, url)
	if !strings.Contains(dom, "<tbody>") || !strings.Contains(dom, "</svg>") {
		t.Fatalf("the DOM has no table body or no chart:\n%s", dom)
	}
	rows := browsertest.TableRows(dom)
	header := []string{"Namespace", "Hits", "Stale", "Misses", "Hit ratio", "Loads", "Load errors", "Coalesced", "Invalidations", "Refused fills"}
	if !hasRow(rows, header) {
		t.Errorf("no namespace header %q in\n%s", header, dom)
	}
	st := s.c.Stats()["article"]
	want := []string{"article", fmt.Sprint(st.Hits), "0", fmt.Sprint(st.Misses),
		fmt.Sprintf("%.1f%%", 100*float64(st.Hits)/float64(st.Hits+st.Misses)),
		fmt.Sprint(st.Loads), "0", "0", "1", "fenced=1"}
	if !hasRow(rows, want) {
		t.Errorf("no article row %q in\n%s", want, dom)
	}
	// The audit's row: every article hit checked, none found stale.
	aud := s.c.AuditStats()["article"]
	if len(aud) != 4 || aud[3].Checks != st.Hits || aud[3].Violations != 0 {
		t.Fatalf("article audit %+v, want %d checks at rest, no violation", aud, st.Hits)
	}
	wantAudit := []string{"article", "–", "–", "–", fmt.Sprintf("≥ %.1f (%d, 0)", math.Log10(float64(st.Hits)), st.Hits), "0", "0"}
	if !hasRow(rows, wantAudit) {
		t.Errorf("no audit row %q in\n%s", wantAudit, dom)
	}
	if n := strings.Count(dom, "<polyline"); n != 3 {
		t.Errorf("%d chart lines in the DOM, want 3", n)
	}

	const width, height = 900, 760
	b, img := browsertest.Screenshot(t, browser, url, width, height)
	if n := colors(img); n < 4 {
		t.Errorf("the screenshot has %d colours: blank?", n)
	}
	browsertest.SaveCopy(t, b, *screenshotTo)
}

// colors counts the distinct colours of img, up to 64: a blank page has
// one, text in black on white a handful more, the chart's lines several.
func colors(img image.Image) int {
	seen := map[[4]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, a := img.At(x, y).RGBA()
			seen[[4]uint32{r, g, bl, a}] = true
			if len(seen) >= 64 {
				return len(seen)
			}
		}
	}
	return len(seen)
}
