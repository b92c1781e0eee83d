"""The customer graph: its schema and the driver that reaches it."""
