package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
)

// The summary: one row per library with the headline number of each
// scenario, printed last and written with -summary for the root README.

var summaryCols = []struct{ key, head string }{
	{"stampede", "loads: 1000 callers"},
	{"fleet", "loads: 4 procs × 250"},
	{"blocked", "blocked Gets / expiry"},
	{"race", "stale reads / 1000"},
	{"warm", "warm hit (serial)"},
	{"tags", "tag invalidation (100k entries)"},
	{"mem", "memory / entry (1 KiB values)"},
	{"gc", "GC wall (1M entries)"},
}

type summary struct {
	mu   sync.Mutex
	rows map[string]map[string]string
}

// note records lib's headline number for a summary column.
func (e *env) note(lib, col, val string) {
	e.sum.mu.Lock()
	defer e.sum.mu.Unlock()
	if e.sum.rows == nil {
		e.sum.rows = make(map[string]map[string]string)
	}
	if e.sum.rows[lib] == nil {
		e.sum.rows[lib] = make(map[string]string)
	}
	e.sum.rows[lib][col] = val
}

// failed counts a row that could not be measured and returns its cell.
func (e *env) failed(lib string, err error) string {
	e.errors.Add(1)
	e.logf("   %s: error: %v", lib, err)
	return "error: " + strings.ReplaceAll(err.Error(), "|", "/")
}

func (e *env) printSummary(w io.Writer) {
	head := []string{"library", "store"}
	for _, c := range summaryCols {
		head = append(head, c.head)
	}
	t := newTable(head...)
	for _, lib := range e.libs {
		row, ok := e.sum.rows[lib.Name]
		if !ok {
			continue
		}
		cells := []any{lib.Name, where(lib)}
		for _, c := range summaryCols {
			v := row[c.key]
			if v == "" {
				v = "—"
			}
			cells = append(cells, v)
		}
		t.add(cells...)
	}
	t.print(w)
}

// writeSummary writes the summary table with its caption to path.
func (e *env) writeSummary(path, caption string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "%s\n\n", caption)
	e.printSummary(f)
	return f.Close()
}
