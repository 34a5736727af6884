package store

import "errors"

// Errors a store returns. The paddock package exports the same values
// under the same names, so callers match them with errors.Is either way.
var (
	// ErrTooLarge is returned by [Store.Fill] when the encoded entry is
	// larger than the store accepts. Nothing is stored.
	ErrTooLarge = errors.New("paddock: value too large for the store")

	// ErrClosed is returned by a Store after Close.
	ErrClosed = errors.New("paddock: closed")

	// ErrInvalidOption is wrapped by every error about a bad option or
	// argument (a key too long for the store, a lease without a TTL).
	ErrInvalidOption = errors.New("paddock: invalid option")

	// ErrCorrupt is matched by errors about bytes that are not what they
	// should be: an entry of another format (see [Entry.UnmarshalBinary])
	// or a value that does not decode. A store that finds such data of a
	// key reports it in [Lookup.Corrupt] instead of failing.
	ErrCorrupt = errors.New("paddock: corrupt or foreign entry")
)
