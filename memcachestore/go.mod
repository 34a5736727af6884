module github.com/paddockcache/paddock/memcachestore

go 1.26.0

require (
	github.com/paddockcache/paddock v0.0.0
	pgregory.net/rapid v1.3.0
)

require (
	github.com/allegro/bigcache/v3 v3.1.0 // indirect
	github.com/maypok86/otter/v2 v2.4.0 // indirect
)

replace github.com/paddockcache/paddock => ..
