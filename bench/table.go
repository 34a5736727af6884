package main

import (
	"fmt"
	"io"
	"strings"
)

// table is a markdown table. Its first left columns are left-aligned (the
// names), the others right-aligned (the numbers).
type table struct {
	head []string
	rows [][]string
	left int
}

func newTable(head ...string) *table { return &table{head: head, left: 2} }

func (t *table) add(cells ...any) {
	row := make([]string, len(cells))
	for i, c := range cells {
		row[i] = fmt.Sprint(c)
	}
	t.rows = append(t.rows, row)
}

func (t *table) print(w io.Writer) {
	line := func(cells []string) {
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	line(t.head)
	sep := make([]string, len(t.head))
	for i := range sep {
		sep[i] = "---"
		if i >= t.left {
			sep[i] = "---:"
		}
	}
	line(sep)
	for _, r := range t.rows {
		line(r)
	}
}

// where names the row's store kind.
func where(l Lib) string {
	if l.Redis {
		return "Redis"
	}
	if l.Memcached {
		return "memcached"
	}
	if l.Disk {
		return "disk (SQLite)"
	}
	return "in-process"
}

// value returns a value of n bytes that names its version.
func value(n int, tag string) []byte {
	b := make([]byte, n)
	copy(b, tag)
	for i := len(tag); i < n; i++ {
		b[i] = 'x'
	}
	return b
}
