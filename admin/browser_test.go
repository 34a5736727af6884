package admin_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"html"
	"image"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
)

var screenshotTo = flag.String("screenshot", "", "write the page's screenshot to this file too (the README's is made with ../docs/admin-page.png)")

// browsers are the names headless Chromium goes by.
var browsers = []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// requireChromium returns the path of a headless Chromium. Without one it
// skips t, or fails it when the environment variable CI is "true".
func requireChromium(t *testing.T) string {
	t.Helper()
	for _, name := range browsers {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("no headless Chromium on PATH (CI=true): looked for %s", strings.Join(browsers, ", "))
	}
	t.Skipf("no headless Chromium on PATH: looked for %s", strings.Join(browsers, ", "))
	return ""
}

// chromium runs the browser headless, with a new empty profile, and
// returns what it printed on stdout.
func chromium(t *testing.T, path string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-proxy-server", "--hide-scrollbars", "--user-data-dir=" + t.TempDir()}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

var (
	rowRE  = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)<t[dh][^>]*>(.*?)</t[dh]>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// tableRows returns the text of the cells of each table row of a page.
func tableRows(dom string) [][]string {
	var rows [][]string
	for _, tr := range rowRE.FindAllStringSubmatch(dom, -1) {
		var cells []string
		for _, td := range cellRE.FindAllStringSubmatch(tr[1], -1) {
			cells = append(cells, strings.TrimSpace(html.UnescapeString(tagRE.ReplaceAllString(td[1], ""))))
		}
		rows = append(rows, cells)
	}
	return rows
}

func hasRow(rows [][]string, want []string) bool {
	return slices.ContainsFunc(rows, func(r []string) bool { return slices.Equal(r, want) })
}

// TestPageInBrowser loads the page, after real traffic, in headless
// Chromium: the DOM the browser built has the tables' rows and the
// chart's lines, and the screenshot is a PNG of the window's size that
// is not blank.
func TestPageInBrowser(t *testing.T) {
	browser := requireChromium(t)
	s := newSite(t, paddock.Audit(1e6), paddock.AuditSample(1), paddock.AuditSettle(0))
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

	dom := string(chromium(t, browser, "--dump-dom", url))
	if !strings.Contains(dom, "<tbody>") || !strings.Contains(dom, "</svg>") {
		t.Fatalf("the DOM has no table body or no chart:\n%s", dom)
	}
	rows := tableRows(dom)
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
	shot := filepath.Join(t.TempDir(), "admin.png")
	chromium(t, browser, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", width, height), url)
	b, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("the screenshot: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X != width || sz.Y != height {
		t.Errorf("the screenshot is %v, want %dx%d", sz, width, height)
	}
	if n := colors(img); n < 4 {
		t.Errorf("the screenshot has %d colours: blank?", n)
	}
	if *screenshotTo != "" {
		if err := os.WriteFile(*screenshotTo, b, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", *screenshotTo)
	}
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
