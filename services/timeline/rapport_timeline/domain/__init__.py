"""Pure timeline logic: no I/O. Times are integer nanoseconds since the Unix epoch (UTC)."""
