module github.com/paddockcache/paddock/memcachestore

go 1.26.0

require github.com/paddockcache/paddock v0.0.0

replace github.com/paddockcache/paddock => ..
