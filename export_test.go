package paddock

// AuditChecksRunning reports how many of c's audit checks are in flight,
// for the tests that count them.
func AuditChecksRunning(c *Cache) int32 {
	if c.audit == nil {
		return 0
	}
	return c.audit.out.Load()
}
