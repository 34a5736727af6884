package redisstore

// A reply read raw (redis.RawCmd): the hit path parses its MGET's reply
// itself, so that the entry's value is a slice of the one buffer the
// reply was read into, and nothing else is allocated. Only what an MGET
// answers is accepted, in RESP2 or RESP3: an array of bulk strings and
// nulls. Anything else (an error reply such as MOVED or LOADING, a push
// frame) is not a hit: the lookup goes the script's way, which reads the
// reply the usual way.

// respArray iterates over the elements of an array reply.
type respArray struct {
	b []byte // what is left after the elements read so far
	n int    // the elements left
}

// readArray reads the header of an array reply.
func readArray(b []byte) (respArray, bool) {
	if len(b) == 0 || b[0] != '*' {
		return respArray{}, false
	}
	n, rest, ok := respLen(b[1:])
	if !ok || n < 0 {
		return respArray{}, false
	}
	return respArray{b: rest, n: n}, true
}

// next returns the next element: its bytes, or nil for a null. ok is false
// at the end, or for anything but a bulk string or a null.
func (a *respArray) next() (v []byte, ok bool) {
	if a.n == 0 || len(a.b) == 0 {
		return nil, false
	}
	a.n--
	switch a.b[0] {
	case '_': // RESP3 null
		if len(a.b) < 3 || a.b[1] != '\r' || a.b[2] != '\n' {
			return nil, false
		}
		a.b = a.b[3:]
		return nil, true
	case '$':
		n, rest, ok := respLen(a.b[1:])
		switch {
		case !ok:
			return nil, false
		case n == -1: // RESP2 null bulk string
			a.b = rest
			return nil, true
		case n < 0 || n+2 > len(rest) || rest[n] != '\r' || rest[n+1] != '\n':
			return nil, false
		}
		v, a.b = rest[:n:n], rest[n+2:]
		return v, true
	}
	return nil, false
}

// done reports whether every element was read and nothing follows.
func (a *respArray) done() bool { return a.n == 0 && len(a.b) == 0 }

// respLen reads a decimal length up to CRLF: digits, or -1.
func respLen(b []byte) (n int, rest []byte, ok bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if i == 10 {
			return 0, nil, false // no reply of ours is a gigabyte
		}
		n = n*10 + int(b[i]-'0')
	}
	if i == 0 || i+1 >= len(b) || b[i] != '\r' || b[i+1] != '\n' {
		return 0, nil, false
	}
	if neg {
		if n != 1 {
			return 0, nil, false
		}
		n = -1
	}
	return n, b[i+2:], true
}
