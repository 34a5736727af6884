package httpcache

// Keys returns the keys of the pages of URL u that the Cache remembers.
func (c *Cache) Keys(u string) []string {
	c.urls.mu.RLock()
	defer c.urls.mu.RUnlock()
	return append([]string(nil), c.urls.m[u]...)
}
