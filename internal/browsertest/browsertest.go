// Package browsertest runs headless Chromium for the tests that look at a
// page in a real browser: the DOM it built and a screenshot.
package browsertest

import (
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddockcache/paddock/internal/servertest"
)

// browsers are the names headless Chromium goes by: Debian's
// chromium-headless-shell and chromium, and the others'.
var browsers = []string{"chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}

// Require returns the path of a headless Chromium. Without one it skips
// tb, or fails it when the environment variable CI is "true".
func Require(tb testing.TB) string {
	tb.Helper()
	for _, name := range browsers {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	servertest.Missing(tb, "no headless Chromium on PATH: looked for %s", strings.Join(browsers, ", "))
	return ""
}

// Run runs the browser at path headless, with a new empty profile and no
// network of its own beyond the page, and returns what it printed on
// stdout.
func Run(tb testing.TB, path string, args ...string) []byte {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--no-proxy-server", "--hide-scrollbars", "--user-data-dir=" + tb.TempDir()}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path, append(base, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s %s: %v\n%s", path, strings.Join(args, " "), err, stderr.Bytes())
	}
	return stdout.Bytes()
}

// DOM returns the DOM the browser built for url.
func DOM(tb testing.TB, path, url string) string {
	tb.Helper()
	return string(Run(tb, path, "--dump-dom", url))
}

// Screenshot takes a screenshot of url in a window of width × height and
// returns its bytes and the decoded image; a screenshot that is not a PNG
// of that size fails tb.
func Screenshot(tb testing.TB, path, url string, width, height int) ([]byte, image.Image) {
	tb.Helper()
	shot := filepath.Join(tb.TempDir(), "screenshot.png")
	Run(tb, path, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,%d", width, height), url)
	b, err := os.ReadFile(shot)
	if err != nil {
		tb.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		tb.Fatalf("the screenshot: %v", err)
	}
	if sz := img.Bounds().Size(); sz.X != width || sz.Y != height {
		tb.Errorf("the screenshot is %v, want %dx%d", sz, width, height)
	}
	return b, img
}

// SaveCopy writes b to the file to, unless to is empty (a test's
// -screenshot flag, which is how the images in docs/ are made).
func SaveCopy(tb testing.TB, b []byte, to string) {
	tb.Helper()
	if to == "" {
		return
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	tb.Logf("wrote %s", to)
}

var (
	rowRE  = regexp.MustCompile(`(?s)<tr[^>]*>(.*?)</tr>`)
	cellRE = regexp.MustCompile(`(?s)<t[dh][^>]*>(.*?)</t[dh]>`)
	tagRE  = regexp.MustCompile(`<[^>]*>`)
)

// TableRows returns the text of the cells of each table row of a DOM.
func TableRows(dom string) [][]string {
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
