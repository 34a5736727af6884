package gormcache

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/paddockcache/paddock"
	"gorm.io/gorm"
)

func TestHitDoesNotTouchDatabase(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, arts := e.seed(t, "Ada", "One", "Two")
		e.reads.Store(0)

		for i := range 3 {
			var got Article
			r := e.cachedDB().First(&got, arts[0].ID)
			must(t, r.Error)
			if got.Title != "One" || got.AuthorID != a.ID || r.RowsAffected != 1 {
				t.Fatalf("First #%d = %+v (rows %d)", i, got, r.RowsAffected)
			}
		}
		e.expectReads(t, 1, "First three times")

		for range 2 {
			var list []Article
			r := e.cachedDB().Where("author_id = ?", a.ID).Order("id").Find(&list)
			must(t, r.Error)
			if len(list) != 2 || list[1].Title != "Two" || r.RowsAffected != 2 {
				t.Fatalf("Find = %+v (rows %d)", list, r.RowsAffected)
			}
		}
		e.expectReads(t, 1, "Find twice")

		for range 2 {
			var n int64
			must(t, e.cachedDB().Model(&Article{}).Where("published = ?", true).Count(&n).Error)
			if n != 2 {
				t.Fatalf("Count = %d, want 2", n)
			}
		}
		e.expectReads(t, 1, "Count twice")

		// The same rows scanned into another destination type: one entry.
		var titles []string
		must(t, e.cachedDB().Model(&Article{}).Where("author_id = ?", a.ID).Order("id").Pluck("title", &titles).Error)
		must(t, e.cachedDB().Model(&Article{}).Where("author_id = ?", a.ID).Order("id").Pluck("title", &titles).Error)
		if !slices.Equal(titles, []string{"One", "Two"}) {
			t.Errorf("Pluck = %q", titles)
		}
		e.expectReads(t, 1, "Pluck twice")

		// A row that does not exist: the hit is a not-found too.
		for range 2 {
			var got Article
			if err := e.cachedDB().First(&got, 999).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
				t.Fatalf("First(999) = %v, want ErrRecordNotFound", err)
			}
		}
		e.expectReads(t, 1, "a missing row twice")

		// Without the scope, every query reaches the database.
		var got Article
		must(t, e.db.First(&got, arts[0].ID).Error)
		must(t, e.db.First(&got, arts[0].ID).Error)
		e.expectReads(t, 2, "uncached First twice")

		if st := e.plugin.Stats(); st.Hits == 0 || st.Loads != 5 {
			t.Errorf("stats %+v, want hits and 5 loads", st)
		}
	})
}

func TestConcurrentIdenticalQueriesLoadOnce(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, _ := e.seed(t, "Ada", "One", "Two", "Three")
		e.reads.Store(0)

		reading := make(chan struct{}, 1)
		release := make(chan struct{})
		e.plugin.afterRead = func(context.Context) {
			reading <- struct{}{}
			<-release
		}
		const n = 20
		calling := make(chan struct{}, n)
		var wg sync.WaitGroup
		query := func() {
			calling <- struct{}{}
			var list []Article
			if err := e.cachedDB().Where("author_id = ?", a.ID).Find(&list).Error; err != nil || len(list) != 3 {
				t.Errorf("Find = %d rows, %v", len(list), err)
			}
		}
		wg.Go(query)
		<-reading // the first query's load has read the rows, and holds
		for range n - 1 {
			wg.Go(query)
		}
		for range n {
			<-calling
		}
		close(release)
		wg.Wait()
		e.expectReads(t, 1, "20 concurrent identical Finds")
		if st := e.plugin.Stats(); st.Loads != 1 {
			t.Errorf("loads = %d, want 1 (stats %+v)", st.Loads, st)
		}
	})
}

func TestWritesInvalidateRowsAndLists(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, arts := e.seed(t, "Ada", "One", "Two")
		id := arts[0].ID

		row := func() (Article, error) {
			var got Article
			err := e.cachedDB().First(&got, id).Error
			return got, err
		}
		list := func() []string {
			var titles []string
			must(t, e.cachedDB().Model(&Article{}).Where("author_id = ?", a.ID).Order("id").Pluck("title", &titles).Error)
			return titles
		}
		count := func() int64 {
			var n int64
			must(t, e.cachedDB().Model(&Article{}).Count(&n).Error)
			return n
		}
		warm := func() {
			row()
			list()
			count()
			e.reads.Store(0)
		}

		warm()
		must(t, e.db.Model(&arts[0]).Update("title", "One, corrected").Error)
		if got, err := row(); err != nil || got.Title != "One, corrected" {
			t.Errorf("after Update: row = %+v, %v", got, err)
		}
		if got := list(); !slices.Equal(got, []string{"One, corrected", "Two"}) {
			t.Errorf("after Update: list = %q", got)
		}
		e.expectReads(t, 2, "row and list after Update")
		if count() != 2 {
			t.Error("count after Update")
		}

		warm()
		arts[0].Title = "One, saved"
		must(t, e.db.Save(&arts[0]).Error)
		if got, _ := row(); got.Title != "One, saved" {
			t.Errorf("after Save: row = %+v", got)
		}

		warm()
		three := Article{Title: "Three", AuthorID: a.ID}
		must(t, e.db.Create(&three).Error)
		if got := list(); !slices.Equal(got, []string{"One, saved", "Two", "Three"}) {
			t.Errorf("after Create: list = %q", got)
		}
		if count() != 3 {
			t.Error("count after Create")
		}

		warm()
		must(t, e.db.Delete(&Article{}, id).Error)
		if _, err := row(); !errors.Is(err, gorm.ErrRecordNotFound) {
			t.Errorf("after Delete: row err = %v, want ErrRecordNotFound", err)
		}
		if got := list(); !slices.Equal(got, []string{"Two", "Three"}) {
			t.Errorf("after Delete: list = %q", got)
		}
		if count() != 2 {
			t.Error("count after Delete")
		}
	})
}

// A write to one row leaves the cached queries of the table's other rows
// alone, and a create of a row drops its cached absence.
func TestRowTagsAreExact(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, arts := e.seed(t, "Ada", "One", "Two")
		first := func(id uint) (Article, error) {
			var got Article // a fresh one: a set ID would be a condition
			err := e.cachedDB().First(&got, id).Error
			return got, err
		}
		_, err := first(arts[1].ID)
		must(t, err)
		e.reads.Store(0)
		must(t, e.db.Model(&arts[0]).Update("title", "One, again").Error)
		_, err = first(arts[1].ID)
		must(t, err)
		e.expectReads(t, 0, "row 2 after a write to row 1")

		if _, err := first(77); !errors.Is(err, gorm.ErrRecordNotFound) {
			t.Fatal(err)
		}
		must(t, e.db.Create(&Article{ID: 77, Title: "Seventy-seven", AuthorID: a.ID}).Error)
		if got, err := first(77); err != nil || got.Title != "Seventy-seven" {
			t.Errorf("after creating row 77: %+v, %v", got, err)
		}
	})
}

func TestBulkUpdateByConditionInvalidatesRows(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, arts := e.seed(t, "Ada", "One", "Two")
		rows := func() []string {
			var titles []string
			for _, art := range arts {
				var got Article
				must(t, e.cachedDB().First(&got, art.ID).Error)
				titles = append(titles, got.Title)
			}
			return titles
		}
		rows()
		must(t, e.db.Model(&Article{}).Where("author_id = ?", a.ID).Update("title", "Retitled").Error)
		if got := rows(); !slices.Equal(got, []string{"Retitled", "Retitled"}) {
			t.Errorf("after a bulk update: rows = %q", got)
		}
		must(t, e.db.Where("title = ?", "Retitled").Delete(&Article{}).Error)
		for _, art := range arts {
			var got Article
			if err := e.cachedDB().First(&got, art.ID).Error; !errors.Is(err, gorm.ErrRecordNotFound) {
				t.Errorf("after a bulk delete: row %d: %v", art.ID, err)
			}
		}
	})
}

func TestReadInTransactionBypassesCache(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		_, arts := e.seed(t, "Ada", "One")
		rollback := errors.New("roll back")
		err := e.db.Transaction(func(tx *gorm.DB) error {
			must(t, tx.Model(&arts[0]).Update("title", "Uncommitted").Error)
			var got Article
			must(t, tx.Scopes(Cached()).First(&got, arts[0].ID).Error)
			if got.Title != "Uncommitted" {
				t.Errorf("in the transaction: %q, want its own write", got.Title)
			}
			return rollback
		})
		if err != rollback {
			t.Fatalf("Transaction = %v", err)
		}
		var got Article
		must(t, e.cachedDB().First(&got, arts[0].ID).Error)
		if got.Title != "One" {
			t.Errorf("after the rollback: %q, want One (the transaction's read was cached?)", got.Title)
		}
	})
}

// A write in an explicit transaction, a read outside
// it before the commit. The read sees the old row, and must not keep it in
// the cache past the commit; the first read after the commit sees the write.
func TestExplicitTransactionInvalidatesAfterCommit(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		_, arts := e.seed(t, "Ada", "One")
		id := arts[0].ID
		read := func() string {
			var got Article
			must(t, e.cachedDB().First(&got, id).Error)
			return got.Title
		}

		t.Run("Transaction", func(t *testing.T) {
			must(t, e.db.Transaction(func(tx *gorm.DB) error {
				if err := tx.Model(&Article{ID: id}).Update("title", "In Transaction").Error; err != nil {
					return err
				}
				if got := read(); got == "In Transaction" {
					t.Errorf("before the commit: read the uncommitted row")
				}
				return nil
			}))
			if got := read(); got != "In Transaction" {
				t.Errorf("after the commit: %q, want the write", got)
			}
		})

		t.Run("Begin", func(t *testing.T) {
			tx := e.db.Begin()
			must(t, tx.Error)
			must(t, tx.Model(&Article{ID: id}).Update("title", "Begin/Commit").Error)
			if got := read(); got == "Begin/Commit" {
				t.Errorf("before the commit: read the uncommitted row")
			}
			if got := read(); got == "Begin/Commit" {
				t.Errorf("before the commit, again: read the uncommitted row")
			}
			must(t, tx.Commit().Error)
			if got := read(); got != "Begin/Commit" {
				t.Errorf("after the commit: %q, want the write", got)
			}
		})

		// A read that runs between the commit and the invalidation reads
		// the new row; one that loaded before the commit is fenced.
		t.Run("read between commit and invalidation", func(t *testing.T) {
			read()
			tx := e.db.Begin()
			must(t, tx.Model(&Article{ID: id}).Update("title", "Fenced").Error)
			e.plugin.beforeApply = func() {
				e.plugin.beforeApply = nil
				if got := read(); got != "Begin/Commit" {
					t.Errorf("between commit and invalidation: %q, want the cached old row", got)
				}
			}
			must(t, tx.Commit().Error)
			if got := read(); got != "Fenced" {
				t.Errorf("after the invalidation: %q, want the write", got)
			}
		})

		t.Run("Rollback", func(t *testing.T) {
			read()
			e.reads.Store(0)
			tx := e.db.Begin()
			must(t, tx.Model(&Article{ID: id}).Update("title", "Rolled back").Error)
			must(t, tx.Rollback().Error)
			if got := read(); got != "Fenced" {
				t.Errorf("after the rollback: %q", got)
			}
			e.expectReads(t, 0, "a read after a rollback")
		})
	})
}

// A negative result racing a create: a query finds nothing, a create of the row it
// looked for commits while the query's load is still running, and the load
// then tries to cache its "not found". The fence refuses it: the absence is
// never served after the create's invalidation.
func TestNegativeResultRacingCreateIsNotServed(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		for _, q := range []struct {
			name string
			run  func(db *gorm.DB) (int, error)
		}{
			{"First", func(db *gorm.DB) (int, error) {
				var a Article
				err := db.First(&a, 5).Error
				if errors.Is(err, gorm.ErrRecordNotFound) {
					return 0, nil
				}
				return 1, err
			}},
			{"list", func(db *gorm.DB) (int, error) {
				var list []Article
				err := db.Where("title = ?", "Five").Find(&list).Error
				return len(list), err
			}},
		} {
			t.Run(q.name, func(t *testing.T) {
				e := open(t, Options{})
				a, _ := e.seed(t, "Ada")
				reading := make(chan struct{})
				release := make(chan struct{})
				e.plugin.afterRead = func(context.Context) {
					e.plugin.afterRead = nil
					close(reading)
					<-release
				}
				done := make(chan int)
				go func() {
					n, err := q.run(e.cachedDB())
					if err != nil {
						t.Error(err)
					}
					done <- n
				}()
				<-reading // the load found nothing, and holds before its fill
				err := e.db.Create(&Article{ID: 5, Title: "Five", AuthorID: a.ID}).Error
				close(release)
				must(t, err)
				if n := <-done; n != 0 {
					t.Fatalf("the held query found %d rows, want 0 (it read before the create)", n)
				}
				if n, err := q.run(e.cachedDB()); err != nil || n != 1 {
					t.Errorf("after the create: %d rows, %v; want the new row", n, err)
				}
				if st := e.plugin.Stats(); st.FillsRefused != 1 {
					t.Errorf("fills refused = %d, want 1", st.FillsRefused)
				}
			})
		}
	})
}

func TestJoinsAreTaggedWithBothTables(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		a, arts := e.seed(t, "Ada", "One")
		for _, q := range []struct {
			name string
			run  func() (string, error)
		}{
			{"relation", func() (string, error) {
				var got Article
				err := e.cachedDB().Joins("Author").First(&got, arts[0].ID).Error
				return got.Author.Name, err
			}},
			{"raw join", func() (string, error) {
				var names []string
				err := e.cachedDB().Model(&Article{}).Joins("JOIN authors ON authors.id = articles.author_id").
					Where("articles.id = ?", arts[0].ID).Pluck("authors.name", &names).Error
				if len(names) != 1 {
					return "", err
				}
				return names[0], err
			}},
			{"preload", func() (string, error) {
				var got Article
				err := e.cachedDB().Preload("Author").First(&got, arts[0].ID).Error
				return got.Author.Name, err
			}},
			{"subquery", func() (string, error) {
				var got []Article
				sub := e.db.Model(&Author{}).Select("id").Where("name = ?", "Ada Lovelace")
				err := e.cachedDB().Where("author_id IN (?)", sub).Find(&got).Error
				if len(got) == 0 {
					return "", err
				}
				return "Ada Lovelace", err
			}},
		} {
			t.Run(q.name, func(t *testing.T) {
				must(t, e.db.Model(&a).Update("name", "Ada").Error)
				if _, err := q.run(); err != nil {
					t.Fatal(err)
				}
				e.reads.Store(0)
				if _, err := q.run(); err != nil {
					t.Fatal(err)
				}
				e.expectReads(t, 0, "the second run")
				must(t, e.db.Model(&a).Update("name", "Ada Lovelace").Error)
				if got, err := q.run(); err != nil || got != "Ada Lovelace" {
					t.Errorf("after renaming the author: %q, %v", got, err)
				}
			})
		}
	})
}

// An outer Loader whose load runs a GORM query depends on what it read:
// a write to the row drops the outer value, cached query or not.
func TestOuterLoadDependsOnQuery(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		_, arts := e.seed(t, "Ada", "One")
		pages := paddock.Must(paddock.NewLoader[string](e.cache, "page"))
		for _, mode := range []string{"cached", "uncached"} {
			t.Run(mode, func(t *testing.T) {
				renders := 0
				page := func() string {
					v, err := pages.Get(context.Background(), mode, func(ctx context.Context) (string, error) {
						renders++
						db := e.db.WithContext(ctx)
						if mode == "cached" {
							db = db.Scopes(Cached())
						}
						var a Article
						err := db.First(&a, arts[0].ID).Error
						return "<h1>" + a.Title + "</h1>", err
					})
					must(t, err)
					return v
				}
				page()
				page()
				if renders != 1 {
					t.Fatalf("renders = %d, want 1", renders)
				}
				title := "Retitled " + mode
				must(t, e.db.Model(&arts[0]).Update("title", title).Error)
				if got := page(); got != "<h1>"+title+"</h1>" {
					t.Errorf("after the write: %q", got)
				}
			})
		}
	})
}

func TestRawAndUnknownQueriesAreNotCached(t *testing.T) {
	e := openSQLite(t, Options{})
	_, arts := e.seed(t, "Ada", "One")
	e.reads.Store(0)
	for range 2 {
		var got []Article
		must(t, e.cachedDB().Raw("SELECT * FROM articles WHERE id = ?", arts[0].ID).Find(&got).Error)
		must(t, e.cachedDB().Where("author_id IN (SELECT id FROM authors WHERE name = ?)", "Ada").Find(&got).Error)
		if len(got) != 1 {
			t.Fatalf("got %d rows", len(got))
		}
	}
	e.expectReads(t, 4, "raw queries and raw subqueries, twice")
}

func TestInitializeErrors(t *testing.T) {
	e := openSQLite(t, Options{})
	if err := e.db.Use(New(e.cache, Options{})); err == nil {
		t.Error("a second plugin on the same namespace: no error")
	}
	if err := New(nil, Options{}).Initialize(e.db); !errors.Is(err, paddock.ErrInvalidOption) {
		t.Errorf("a nil Cache: %v", err)
	}
}

// Kinds has a column of each kind of value a driver returns.
type Kinds struct {
	ID    uint
	F     float64
	B     []byte
	T     time.Time
	N     *string
	Ok    bool
	Small int8
}

// A hit read from the store (no hot tier) decodes the rows as the database
// returned them.
func TestHitFromStoreScansLikeTheDatabase(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{Loader: []paddock.LoaderOption{paddock.HotSize(0)}})
		must(t, e.db.AutoMigrate(&Kinds{}))
		name := "named"
		rows := []Kinds{
			{F: 3.5, B: []byte{0, 255}, T: time.Date(2025, 3, 14, 9, 26, 53, 589793000, time.UTC), N: &name, Ok: true, Small: -3},
			{F: -0.25, T: time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC)},
		}
		must(t, e.db.Create(&rows).Error)
		var direct, first, second []Kinds
		must(t, e.db.Order("id").Find(&direct).Error)
		e.reads.Store(0)
		must(t, e.cachedDB().Order("id").Find(&first).Error)
		must(t, e.cachedDB().Order("id").Find(&second).Error)
		e.expectReads(t, 1, "two cached Finds")
		if st := e.plugin.Stats(); st.Hits != 1 {
			t.Errorf("hits = %d, want 1 from the store", st.Hits)
		}
		for _, got := range [][]Kinds{first, second} {
			if len(got) != len(direct) {
				t.Fatalf("%d rows, want %d", len(got), len(direct))
			}
			for i := range got {
				g, d := got[i], direct[i]
				if !g.T.Equal(d.T) {
					t.Errorf("row %d: T = %v, want %v", i, g.T, d.T)
				}
				g.T, d.T = time.Time{}, time.Time{}
				if !reflect.DeepEqual(g, d) {
					t.Errorf("row %d = %+v, want %+v", i, g, d)
				}
			}
		}
		// Into maps, without a model: the driver's values and scan types.
		var maps, directMaps []map[string]any
		must(t, e.db.Table("kinds").Order("id").Find(&directMaps).Error)
		must(t, e.cachedDB().Table("kinds").Order("id").Find(&[]map[string]any{}).Error)
		must(t, e.cachedDB().Table("kinds").Order("id").Find(&maps).Error)
		if len(maps) != 2 || fmt.Sprint(maps[0]["f"]) != fmt.Sprint(directMaps[0]["f"]) ||
			reflect.TypeOf(maps[0]["small"]) != reflect.TypeOf(directMaps[0]["small"]) {
			t.Errorf("maps = %v, want %v", maps, directMaps)
		}
	})
}

// Writes GORM makes for associations, and writes without GORM's default
// transaction, invalidate too.
func TestAssociationAndAutocommitWritesInvalidate(t *testing.T) {
	dialects(t, func(t *testing.T, open func(*testing.T, Options) *env) {
		e := open(t, Options{})
		authors := func() int {
			var n int64
			must(t, e.cachedDB().Model(&Author{}).Count(&n).Error)
			return int(n)
		}
		if authors() != 0 {
			t.Fatal("authors at start")
		}
		must(t, e.db.Create(&Article{Title: "With a new author", Author: Author{Name: "Grace"}}).Error)
		if n := authors(); n != 1 {
			t.Errorf("authors after an article created with its author = %d, want 1", n)
		}

		auto := e.db.Session(&gorm.Session{SkipDefaultTransaction: true})
		must(t, auto.Create(&Author{Name: "Edsger"}).Error)
		if n := authors(); n != 2 {
			t.Errorf("authors after a create without a transaction = %d, want 2", n)
		}
	})
}
