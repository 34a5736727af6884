module github.com/paddockcache/paddock/proptest/linearizability

go 1.26.0

require (
	github.com/anishathalye/porcupine v1.3.1
	github.com/paddockcache/paddock v0.0.0
)

require (
	github.com/allegro/bigcache/v3 v3.1.0 // indirect
	github.com/maypok86/otter/v2 v2.4.0 // indirect
)

replace github.com/paddockcache/paddock => ../..
