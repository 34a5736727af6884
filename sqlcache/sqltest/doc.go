// Package sqltest tests package sqlcache on real databases: SQLite
// (modernc.org/sqlite, in every run) and PostgreSQL (pgx, on a server the
// tests start). It is a module of its own so that the drivers stay out of
// paddock's dependencies; it has no code but its tests and examples.
package sqltest
