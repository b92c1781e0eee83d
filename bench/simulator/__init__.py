"""A seeded discrete-event contact centre for the routing-quality bench (issue 7)."""
