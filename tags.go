package paddock

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

type tagKey struct{}

// tagSet collects the tags a load names with [Tag] while it runs.
type tagSet struct {
	mu   sync.Mutex
	tags []string
}

// Tag adds tags to the entry being loaded. Call it from inside a load
// function, with the context the load was given, once the tags are known
// (often only after the query: the author of an article, the ids on a
// page). The fill is fenced by these tags like by any other: if one of them
// was invalidated after the load began, the fill is refused. Outside a load
// Tag does nothing.
func Tag(ctx context.Context, tags ...string) {
	ts, ok := ctx.Value(tagKey{}).(*tagSet)
	if !ok {
		return
	}
	ts.mu.Lock()
	ts.tags = append(ts.tags, tags...)
	ts.mu.Unlock()
}

// ModelTag returns the tag of one row of a model, "model:id": what a load
// built from that row tags itself with, and what the code that writes the
// row invalidates. ModelTag("article", 42) is "article:42".
func ModelTag(model string, id any) string {
	return fmt.Sprintf("%s:%v", model, id)
}

func withTags(ctx context.Context) (context.Context, *tagSet) {
	ts := new(tagSet)
	return context.WithValue(ctx, tagKey{}, ts), ts
}

func (ts *tagSet) list() []string {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return slices.Clone(ts.tags)
}

// mergeTags returns the sorted union of a and b without empty strings.
func mergeTags(a, b []string) []string {
	if len(a)+len(b) == 0 {
		return nil
	}
	out := make([]string, 0, len(a)+len(b))
	for _, t := range a {
		if t != "" {
			out = append(out, t)
		}
	}
	for _, t := range b {
		if t != "" {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
