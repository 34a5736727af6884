package paddock

import (
	"errors"
	"fmt"

	"github.com/paddockcache/paddock/store"
)

var (
	// ErrNotFound is returned by a load to say that the value does not
	// exist. The Cache stores that answer for the negative TTL (see
	// [NegativeTTL]) and returns ErrNotFound to every caller meanwhile.
	ErrNotFound = errors.New("paddock: not found")

	// ErrLoadPanicked is matched (with [errors.Is]) by the error callers get
	// when the load panicked; the error is a [*PanicError].
	ErrLoadPanicked = errors.New("paddock: load panicked")

	// ErrTooLarge is returned when an encoded value is larger than the
	// store accepts. The loaded value is still returned with it; nothing is
	// stored.
	ErrTooLarge = store.ErrTooLarge

	// ErrClosed is returned by a Cache or Store after Close.
	ErrClosed = store.ErrClosed

	// ErrCorrupt is matched by the error of bytes that do not decode: an
	// entry of another format, or a value of another type or version. The
	// Cache counts such entries in [Stats].DecodeErrors and loads again.
	ErrCorrupt = store.ErrCorrupt

	// ErrStoreUnavailable wraps store failures that a call could not work
	// around (Set, Invalidate). Get works around them by loading.
	ErrStoreUnavailable = errors.New("paddock: store unavailable")

	// ErrInvalidOption is wrapped by every error about a bad option or
	// argument.
	ErrInvalidOption = store.ErrInvalidOption
)

// A PanicError is the error every caller of a load gets when the load
// panicked. The panic does not crash the process and does not stick to the
// key: the next Get loads again.
type PanicError struct {
	// Value is what the load passed to panic.
	Value any
	// Stack is the load goroutine's stack at the panic.
	Stack []byte
}

// Error returns the panic value and the load's stack.
func (p *PanicError) Error() string {
	return fmt.Sprintf("paddock: load panicked: %v\n\n%s", p.Value, p.Stack)
}

// Is makes errors.Is(err, ErrLoadPanicked) true.
func (p *PanicError) Is(target error) bool { return target == ErrLoadPanicked }

// Unwrap returns the panic value if it is an error.
func (p *PanicError) Unwrap() error {
	err, _ := p.Value.(error)
	return err
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidOption}, args...)...)
}
