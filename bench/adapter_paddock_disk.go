package main

import (
	"os"
	"path/filepath"

	"github.com/paddockcache/paddock/diskstore"
)

// paddock on disk: diskstore on a new SQLite file in a temporary
// directory (removed by Close), with room for every entry the scenario
// holds.

func init() {
	register(Lib{
		Name:   "paddock-disk",
		Disk:   true,
		Module: "github.com/paddockcache/paddock + diskstore",
		Notes:  "`diskstore.Open(temp file, MaxBytes)`; `NewLoader[[]byte](c, ns, TTL(TTL), Stale(Stale))` (early refresh: default `Beta(" + defaultBeta + ")`); `Get`; `Invalidate`, `InvalidateTags`",
		New: func(cfg Config) (Cache, error) {
			dir, err := os.MkdirTemp("", "paddock-bench-disk-")
			if err != nil {
				return nil, err
			}
			need := int64(cfg.Entries) * int64(cfg.ValueSize+160) * 2
			s, err := diskstore.Open(filepath.Join(dir, "cache.db"), diskstore.MaxBytes(max(need, 256<<20)))
			if err != nil {
				os.RemoveAll(dir)
				return nil, err
			}
			return newPaddock(&removingStore{s, dir}, cfg)
		},
	})
}

// removingStore removes the database's directory when it is closed.
type removingStore struct {
	*diskstore.Store
	dir string
}

func (s *removingStore) Close() error {
	err := s.Store.Close()
	os.RemoveAll(s.dir)
	return err
}
