package gormcache

import (
	"database/sql/driver"
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/paddockcache/paddock"
	"gorm.io/gorm"
	"gorm.io/gorm/clause"
	"gorm.io/gorm/schema"
)

// RowsTag returns the tag that every cached query restricted to rows of table
// by primary key carries besides the rows' own tags (ModelTag(table, pk)):
// ModelTag(table, "*"). A write whose rows the plugin cannot name (a bulk
// Updates or Delete by a condition, a create with an upsert clause other than
// on the primary key) invalidates it with the table's tag, and so drops every
// cached query of the table.
func RowsTag(table string) string { return paddock.ModelTag(table, "*") }

// readTags returns the tags of a built query: the table's tag for every table
// it reads, or, for its main table when the WHERE clause restricts the
// primary key to known values (AND-ed with anything), the rows' tags and
// RowsTag instead. ok is false when the plugin cannot name every table the
// query reads (raw SQL with a subquery or a join it cannot parse): such a
// query is not cached.
func readTags(stmt *gorm.Statement) (tags []string, ok bool) {
	var a analysis
	a.statement(stmt, true)
	if a.unknown {
		return nil, false
	}
	// Cross-check with the SQL as built: every SELECT and JOIN in it must be
	// one the analysis accounted for, or a raw fragment read a table the
	// plugin did not see.
	sqlText := stmt.SQL.String()
	if n := len(selectWord.FindAllStringIndex(sqlText, -1)); n > a.selects {
		return nil, false
	}
	if n := len(joinWord.FindAllStringIndex(sqlText, -1)); n > a.joins {
		return nil, false
	}
	return a.tags, true
}

var (
	selectWord = regexp.MustCompile(`(?i)\bselect\b`)
	joinWord   = regexp.MustCompile(`(?i)\bjoin\b`)
	// joinTable finds the table after each JOIN of a raw join clause.
	joinTable = regexp.MustCompile("(?i)\\bjoin\\s+([\\w.\"`\\[\\]]+)")
	// plainTable is a table expression that is a (quoted, qualified) name
	// with an optional alias.
	plainTable = regexp.MustCompile("(?i)^\\s*[\\w.\"`\\[\\]]+(\\s+(as\\s+)?[\\w\"`\\[\\]]+)?\\s*$")
	// subqueryTable is a table expression that is one subquery with an
	// optional alias: Table("(?) AS u", subquery).
	subqueryTable = regexp.MustCompile("(?i)^\\s*\\(\\s*\\?\\s*\\)(\\s+(as\\s+)?[\\w\"`\\[\\]]+)?\\s*$")
	// pkCondition is a raw condition on one column: "id = ?", "users.id IN ?",
	// "`id` IN (?)".
	pkCondition = regexp.MustCompile("(?i)^\\s*(?:[\"`\\[]?(\\w+)[\"`\\]]?\\.)?[\"`\\[]?(\\w+)[\"`\\]]?\\s*(=|in)\\s*(\\(\\s*\\?\\s*\\)|\\?)\\s*$")
)

// analysis walks a statement for the tables it reads.
type analysis struct {
	tags    []string
	seen    map[string]bool
	selects int // SELECTs accounted for
	joins   int // JOINs accounted for
	unknown bool
}

func (a *analysis) add(tags ...string) {
	if a.seen == nil {
		a.seen = make(map[string]bool)
	}
	for _, t := range tags {
		if t != "" && !a.seen[t] {
			a.seen[t] = true
			a.tags = append(a.tags, t)
		}
	}
}

// statement accounts for one SELECT: its main table, joins and subqueries.
// rows says whether the main table may be tagged by rows (the outer query;
// a subquery's result is not the rows it reads).
func (a *analysis) statement(stmt *gorm.Statement, rows bool) {
	a.statementOf(stmt, stmt.Schema, stmt.Table, rows)
}

// statementOf is statement with the statement's schema and table given (a
// subquery's, parsed here, are not set on it).
func (a *analysis) statementOf(stmt *gorm.Statement, sch *schema.Schema, table string, rows bool) {
	a.selects++
	if table == "" && sch != nil {
		table = sch.Table
	}
	if e := stmt.TableExpr; e != nil {
		switch {
		case plainTable.MatchString(e.SQL) && len(e.Vars) == 0:
			// GORM sets Table to the alias of "articles AS a": the table
			// is the first word.
			table = unquoteTable(strings.Fields(e.SQL)[0])
		case subqueryTable.MatchString(e.SQL) && len(e.Vars) == 1:
			// The alias is not a table: the subquery names the tables.
			a.vars(e.Vars)
			table = ""
		default:
			a.unknown = true
		}
	} else if table == "" {
		a.unknown = true
	}
	if table != "" {
		// With joins too: the rows of the main table are still among those
		// keys; the joined tables are tagged whole.
		if ids, ok := pkRestriction(stmt, sch, table); ok && rows {
			a.add(RowsTag(table))
			for _, id := range ids {
				a.add(paddock.ModelTag(table, id))
			}
		} else {
			a.add(table)
		}
	}
	accounted := make(map[string]bool)
	for _, j := range stmt.Joins {
		a.join(sch, j.Name, j.Conds, j.On)
		accounted[j.Name] = true
	}
	if c, ok := stmt.Clauses["FROM"]; ok {
		if from, ok := c.Expression.(clause.From); ok {
			for _, t := range from.Tables {
				if t.Raw {
					a.unknown = true
				}
				a.add(t.Name)
			}
			for _, j := range from.Joins {
				switch e := j.Expression.(type) {
				case nil:
					if !accounted[j.Table.Name] && !accounted[j.Table.Alias] {
						// A join clause added by hand.
						a.joins++
						a.add(j.Table.Name)
					}
				case clause.NamedExpr:
					if !accounted[e.SQL] {
						a.rawJoin(e.SQL, e.Vars)
					}
				case clause.Expr:
					a.rawJoin(e.SQL, e.Vars)
				default:
					// A relation join given an expression is accounted for
					// by its relation; any other is unknown.
					if len(stmt.Joins) == 0 {
						a.unknown = true
					}
				}
			}
		}
	}
	for name, c := range stmt.Clauses {
		if name == "FROM" {
			continue
		}
		a.expr(c.Expression)
	}
}

// join accounts for one entry of Statement.Joins: a relation (or a nested
// one, "Manager.Company"), or raw SQL.
func (a *analysis) join(sch *schema.Schema, name string, conds []any, on *clause.Where) {
	if on != nil {
		a.expr(*on)
	}
	if sch != nil {
		rels := sch.Relationships.Relations
		var found []*schema.Relationship
		for part := range strings.SplitSeq(name, ".") {
			r, ok := rels[part]
			if !ok {
				found = nil
				break
			}
			found = append(found, r)
			rels = r.FieldSchema.Relationships.Relations
		}
		if len(found) > 0 {
			for _, r := range found {
				a.joins++
				a.add(r.FieldSchema.Table)
			}
			a.vars(conds)
			return
		}
	}
	a.rawJoin(name, conds)
}

// rawJoin accounts for a raw join clause: the table after each JOIN.
func (a *analysis) rawJoin(sqlText string, vars []any) {
	for _, m := range joinTable.FindAllStringSubmatch(sqlText, -1) {
		name := m[1]
		if strings.HasPrefix(name, "(") {
			continue
		}
		a.joins++
		a.add(unquoteTable(name))
	}
	a.vars(vars)
}

// unquoteTable turns `schema`."table" into table.
func unquoteTable(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		name = name[i+1:]
	}
	return strings.Trim(name, "\"`[]")
}

// expr accounts for the subqueries in a clause expression.
func (a *analysis) expr(e clause.Expression) {
	switch e := e.(type) {
	case nil:
	case clause.Where:
		for _, x := range e.Exprs {
			a.expr(x)
		}
	case clause.AndConditions:
		for _, x := range e.Exprs {
			a.expr(x)
		}
	case clause.OrConditions:
		for _, x := range e.Exprs {
			a.expr(x)
		}
	case clause.NotConditions:
		for _, x := range e.Exprs {
			a.expr(x)
		}
	case clause.Expr:
		a.vars(e.Vars)
	case clause.NamedExpr:
		a.vars(e.Vars)
	case clause.Eq:
		a.vars([]any{e.Value})
	case clause.Neq:
		a.vars([]any{e.Value})
	case clause.IN:
		a.vars(e.Values)
	case clause.Select:
		a.expr(e.Expression)
	case clause.GroupBy:
		for _, x := range e.Having {
			a.expr(x)
		}
	case clause.OrderBy:
		a.expr(e.Expression)
	}
	// Other expressions (Gt, Like, Limit, Locking, ...) carry values, not
	// subqueries; a raw subquery anywhere is caught by the SQL cross-check.
}

// vars accounts for the subqueries among vars (a *gorm.DB as a value).
func (a *analysis) vars(vars []any) {
	for _, v := range vars {
		switch v := v.(type) {
		case *gorm.DB:
			a.subquery(v)
		case clause.Expression:
			a.expr(v)
		case []any:
			a.vars(v)
		}
	}
}

// subquery accounts for a *gorm.DB used as a value: its tables, by table
// (a subquery's rows are not the outer query's).
func (a *analysis) subquery(db *gorm.DB) {
	stmt := db.Statement
	sch, table := stmt.Schema, stmt.Table
	if sch == nil && (stmt.Model != nil || stmt.Dest != nil) {
		model := stmt.Model
		if model == nil {
			model = stmt.Dest
		}
		parsed := &gorm.Statement{DB: db}
		if err := parsed.Parse(model); err == nil {
			sch = parsed.Schema
			if table == "" {
				table = parsed.Table
			}
		}
	}
	a.statementOf(stmt, sch, table, false)
}

// writeTags returns the tags a successful write invalidates: its table's,
// and the rows' tags (ModelTag(table, pk)) when it can name every row it may
// have changed, else RowsTag(table).
func writeTags(stmt *gorm.Statement, create bool) []string {
	table := stmt.Table
	if table == "" && stmt.Schema != nil {
		table = stmt.Schema.Table
	}
	if table == "" {
		return nil
	}
	var ids []string
	var ok bool
	if create {
		ids, ok = createdRows(stmt)
	} else {
		ids, ok = pkRestriction(stmt, stmt.Schema, table)
		if ok && setsPrimaryKey(stmt) {
			ok = false
		}
	}
	tags := []string{table}
	if !ok {
		return append(tags, RowsTag(table))
	}
	for _, id := range ids {
		tags = append(tags, paddock.ModelTag(table, id))
	}
	return tags
}

// createdRows returns the primary keys of the rows a Create wrote: those of
// its values, which GORM fills from the database. ok is false when one is
// unknown (zero, a map value, a composite key) or an upsert clause may have
// changed a row other than the one with the value's key.
func createdRows(stmt *gorm.Statement) (ids []string, ok bool) {
	pk := singlePK(stmt.Schema)
	if pk == nil {
		return nil, false
	}
	if c, found := stmt.Clauses["ON CONFLICT"]; found {
		oc, isOC := c.Expression.(clause.OnConflict)
		if !isOC {
			return nil, false
		}
		// DO NOTHING changes no existing row; an update on a conflict of the
		// primary key changes the row of the value's key.
		onPK := len(oc.Columns) == 1 && oc.Columns[0].Name == pk.DBName && oc.OnConstraint == ""
		if !oc.DoNothing && !onPK {
			return nil, false
		}
	}
	rv := reflect.Indirect(stmt.ReflectValue)
	one := func(v reflect.Value) bool {
		v = reflect.Indirect(v)
		if v.Kind() != reflect.Struct || v.Type() != stmt.Schema.ModelType {
			return false
		}
		val, zero := pk.ValueOf(stmt.Context, v)
		if zero {
			return false
		}
		ids = append(ids, idString(val))
		return true
	}
	switch rv.Kind() {
	case reflect.Struct:
		if !one(rv) {
			return nil, false
		}
	case reflect.Slice, reflect.Array:
		for i := range rv.Len() {
			if !one(rv.Index(i)) {
				return nil, false
			}
		}
	default:
		return nil, false
	}
	return ids, true
}

// setsPrimaryKey reports whether an update assigns the primary key: the row
// then appears under a key the WHERE clause does not name. GORM removes the
// SET clause once the update has run, so the assigned columns are read from
// the SQL it ran.
func setsPrimaryKey(stmt *gorm.Statement) bool {
	if c, ok := stmt.Clauses["SET"]; ok {
		set, ok := c.Expression.(clause.Set)
		if !ok {
			return true
		}
		for _, as := range set {
			if isPKColumn(as.Column, stmt.Schema, stmtTable(stmt)) {
				return true
			}
		}
		return false
	}
	m := setList.FindStringSubmatch(stmt.SQL.String())
	if m == nil {
		// Not an UPDATE ... SET (a soft delete's is): assume the worst.
		return !strings.HasPrefix(strings.TrimSpace(strings.ToUpper(stmt.SQL.String())), "DELETE")
	}
	for _, col := range setColumn.FindAllStringSubmatch(m[1], -1) {
		if isPKColumn(col[1], stmt.Schema, stmtTable(stmt)) {
			return true
		}
	}
	return false
}

var (
	// setList is the assignments of an UPDATE.
	setList = regexp.MustCompile(`(?is)^\s*UPDATE\s.*?\sSET\s(.*?)(?:\sWHERE\s|\sRETURNING\s|$)`)
	// setColumn is one assigned column.
	setColumn = regexp.MustCompile("(?:^|,)\\s*((?:[\"`\\[]?\\w+[\"`\\]]?\\.)?[\"`\\[]?\\w+[\"`\\]]?)\\s*=")
)

func stmtTable(stmt *gorm.Statement) string {
	if stmt.Table != "" {
		return stmt.Table
	}
	if stmt.Schema != nil {
		return stmt.Schema.Table
	}
	return ""
}

// singlePK returns the primary key field of a schema with a one-column key.
func singlePK(s *schema.Schema) *schema.Field {
	if s == nil || len(s.PrimaryFields) != 1 {
		return nil
	}
	return s.PrimaryFields[0]
}

// pkRestriction returns the primary keys a statement's WHERE clause restricts
// table's rows to: one of its AND-ed conditions is "pk = v" or "pk IN (...)".
// Its rows (or, for a write, the rows it may change) are then among those.
// ok is false for any other WHERE clause, one with an OR at its top, or a
// table without a one-column primary key.
func pkRestriction(stmt *gorm.Statement, sch *schema.Schema, table string) (ids []string, ok bool) {
	if singlePK(sch) == nil || sch.Table != table {
		return nil, false
	}
	c, found := stmt.Clauses["WHERE"]
	if !found {
		return nil, false
	}
	where, isWhere := c.Expression.(clause.Where)
	if !isWhere {
		return nil, false
	}
	for _, e := range where.Exprs {
		if _, isOr := e.(clause.OrConditions); isOr {
			return nil, false
		}
	}
	for _, e := range where.Exprs {
		if vals, isPK := pkValues(e, sch, table); isPK {
			ids := make([]string, 0, len(vals))
			for _, v := range vals {
				ids = append(ids, idString(v))
			}
			return ids, true
		}
	}
	return nil, false
}

// pkValues reports whether e restricts the primary key to values.
func pkValues(e clause.Expression, sch *schema.Schema, table string) (values []any, ok bool) {
	switch e := e.(type) {
	case clause.Eq:
		if isPKColumn(e.Column, sch, table) {
			return scalars([]any{e.Value})
		}
	case clause.IN:
		if isPKColumn(e.Column, sch, table) {
			return scalars(e.Values)
		}
	case clause.Expr:
		m := pkCondition.FindStringSubmatch(e.SQL)
		if m == nil || len(e.Vars) != 1 || (m[1] != "" && m[1] != table) {
			return nil, false
		}
		if !isPKColumn(m[2], sch, table) {
			return nil, false
		}
		v := e.Vars[0]
		if strings.EqualFold(m[3], "in") {
			rv := reflect.ValueOf(v)
			if _, isValuer := v.(driver.Valuer); isValuer || !rv.IsValid() ||
				(rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array) || rv.Type().Elem().Kind() == reflect.Uint8 {
				return nil, false
			}
			vals := make([]any, rv.Len())
			for i := range vals {
				vals[i] = rv.Index(i).Interface()
			}
			return scalars(vals)
		}
		return scalars([]any{v})
	}
	return nil, false
}

// scalars returns vals, with driver.Valuers resolved, if each is a plain
// value (not nil, not a subquery or an expression, not a list).
func scalars(vals []any) ([]any, bool) {
	out := make([]any, 0, len(vals))
	for _, v := range vals {
		if vr, ok := v.(driver.Valuer); ok {
			var err error
			if v, err = vr.Value(); err != nil {
				return nil, false
			}
		}
		switch v.(type) {
		case nil, *gorm.DB, clause.Expression, gorm.Valuer, []byte:
			return nil, false
		}
		rv := reflect.ValueOf(v)
		for rv.Kind() == reflect.Pointer {
			if rv.IsNil() {
				return nil, false
			}
			rv = rv.Elem()
		}
		switch rv.Kind() {
		case reflect.Slice, reflect.Array, reflect.Map, reflect.Struct, reflect.Func, reflect.Chan, reflect.Interface:
			if _, isStringer := v.(fmt.Stringer); !isStringer || rv.Kind() != reflect.Struct && rv.Kind() != reflect.Array {
				return nil, false
			}
		}
		out = append(out, rv.Interface())
	}
	return out, len(out) > 0
}

// isPKColumn reports whether col names the primary key column of table.
func isPKColumn(col any, sch *schema.Schema, table string) bool {
	pk := singlePK(sch)
	if pk == nil {
		return false
	}
	var t, name string
	switch c := col.(type) {
	case clause.Column:
		if c.Raw {
			return isPKColumn(c.Name, sch, table)
		}
		t, name = c.Table, c.Name
	case string:
		name = c
		if i := strings.LastIndexByte(c, '.'); i >= 0 {
			t, name = strings.Trim(c[:i], "\"`[]"), c[i+1:]
		}
		name = strings.Trim(name, "\"`[]")
	default:
		return false
	}
	if t != "" && t != clause.CurrentTable && t != table {
		return false
	}
	return name == clause.PrimaryKey || name == pk.DBName || name == pk.Name
}

// idString is a primary key as tags name it: what ModelTag makes of it, with
// driver.Valuers (a UUID type) resolved first, so that a key read from a
// condition and one read from a model name the same row.
func idString(v any) string {
	if vr, ok := v.(driver.Valuer); ok {
		if dv, err := vr.Value(); err == nil {
			v = dv
		}
	}
	if b, ok := v.([]byte); ok {
		v = string(b)
	}
	return fmt.Sprint(v)
}
