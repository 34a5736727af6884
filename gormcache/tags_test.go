package gormcache

import (
	"slices"
	"testing"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"
)

// tagsOf builds q's query with the plugin's tag analysis, as a dry run.
func tagsOf(t *testing.T, q *gorm.DB) ([]string, bool) {
	t.Helper()
	var tags []string
	var ok bool
	q = q.Session(&gorm.Session{DryRun: true})
	q.Callback().Query().After("gorm:query").Register("test:tags", func(db *gorm.DB) {
		tags, ok = readTags(db.Statement)
	})
	defer q.Callback().Query().Remove("test:tags")
	var out []Article
	must(t, q.Find(&out).Error)
	slices.Sort(tags)
	return tags, ok
}

func TestReadTags(t *testing.T) {
	e := openSQLite(t, Options{})
	db := e.db
	for _, c := range []struct {
		name string
		q    *gorm.DB
		want []string // nil: not cacheable
	}{
		{"list", db.Where("title = ?", "x"), []string{"articles"}},
		{"by key", db.Where("id = ?", 3), []string{"articles:*", "articles:3"}},
		{"by keys", db.Where("articles.id IN ?", []int{3, 4}).Where("published = ?", true), []string{"articles:*", "articles:3", "articles:4"}},
		{"by key in a map", db.Where(map[string]any{"id": 5}), []string{"articles:*", "articles:5"}},
		{"by key in a struct", db.Where(&Article{ID: 6}), []string{"articles:*", "articles:6"}},
		{"by key OR something", db.Where("id = ?", 3).Or("title = ?", "x"), []string{"articles"}},
		{"by another column", db.Where(clause.Eq{Column: "author_id", Value: 3}), []string{"articles"}},
		{"by key of a joined table", db.Joins("Author").Where("Author.id = ?", 3), []string{"articles", "authors"}},
		{"by key, joined", db.Joins("Author").Where("articles.id = ?", 3), []string{"articles:*", "articles:3", "authors"}},
		{"raw join", db.Joins("LEFT JOIN authors a ON a.id = articles.author_id"), []string{"articles", "authors"}},
		{"subquery", db.Where("author_id IN (?)", db.Model(&Author{}).Select("id")), []string{"articles", "authors"}},
		{"raw subquery", db.Where("author_id IN (SELECT id FROM authors)"), nil},
		{"raw subquery join", db.Joins("JOIN (SELECT * FROM authors) a ON a.id = articles.author_id"), nil},
		{"raw select subquery", db.Select("*, (SELECT count(*) FROM authors) AS n"), nil},
		{"table with alias", db.Table("articles AS a"), []string{"articles"}},
		{"quoted qualified table", db.Table(`"main"."articles"`), []string{"articles"}},
		{"raw table list", db.Table("articles, authors"), nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			tags, ok := tagsOf(t, c.q)
			if c.want == nil {
				if ok {
					t.Errorf("tags %q, want the query uncached", tags)
				}
				return
			}
			if !ok || !slices.Equal(tags, c.want) {
				t.Errorf("tags %q (ok %v), want %q", tags, ok, c.want)
			}
		})
	}
}

func TestWriteTags(t *testing.T) {
	e := openSQLite(t, Options{})
	var got []string
	for _, proc := range []string{"create", "update", "delete"} {
		create := proc == "create"
		cb := e.db.Callback()
		after := func(db *gorm.DB) {
			if db.Error == nil {
				got = append(got, writeTags(db.Statement, create)...)
			}
		}
		switch proc {
		case "create":
			must(t, cb.Create().After("gorm:create").Register("test:tags", after))
		case "update":
			must(t, cb.Update().After("gorm:update").Register("test:tags", after))
		case "delete":
			must(t, cb.Delete().After("gorm:delete").Register("test:tags", after))
		}
	}
	a, arts := e.seed(t, "Ada", "One", "Two")
	for _, c := range []struct {
		name  string
		write func(db *gorm.DB) error
		want  []string
	}{
		{"create", func(db *gorm.DB) error { return db.Create(&Article{ID: 10, Title: "Ten", AuthorID: a.ID}).Error },
			[]string{"articles", "articles:10"}},
		{"create many", func(db *gorm.DB) error {
			return db.Create([]*Article{{ID: 11, AuthorID: a.ID}, {ID: 12, AuthorID: a.ID}}).Error
		}, []string{"articles", "articles:11", "articles:12"}},
		{"create with its author", func(db *gorm.DB) error {
			return db.Create(&Article{ID: 13, Author: Author{ID: 9, Name: "New"}}).Error
		}, []string{"articles", "articles:13", "authors", "authors:9"}},
		{"upsert on the key", func(db *gorm.DB) error {
			return db.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "id"}}, UpdateAll: true}).
				Create(&Article{ID: 10, Title: "Ten again", AuthorID: a.ID}).Error
		}, []string{"articles", "articles:10"}},
		{"update a model", func(db *gorm.DB) error { return db.Model(&arts[0]).Update("title", "x").Error },
			[]string{"articles", "articles:" + itoa(arts[0].ID)}},
		{"update by condition", func(db *gorm.DB) error {
			return db.Model(&Article{}).Where("author_id = ?", a.ID).Update("title", "y").Error
		}, []string{"articles", "articles:*"}},
		{"update the key", func(db *gorm.DB) error { return db.Model(&Article{ID: 10}).Update("id", 20).Error },
			[]string{"articles", "articles:*"}},
		{"delete by key", func(db *gorm.DB) error { return db.Delete(&Article{}, 11).Error },
			[]string{"articles", "articles:11"}},
		{"delete by condition", func(db *gorm.DB) error { return db.Where("title = ?", "y").Delete(&Article{}).Error },
			[]string{"articles", "articles:*"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got = nil
			must(t, c.write(e.db))
			slices.Sort(got)
			got = slices.Compact(got)
			if !slices.Equal(got, c.want) {
				t.Errorf("tags %q, want %q", got, c.want)
			}
		})
	}
}

func itoa(id uint) string { return idString(id) }
