"""Speed measurements that print figures (never asserted in tests)."""
