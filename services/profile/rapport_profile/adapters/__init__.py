"""The profile service's edges: all Cypher and all Kafka live here."""
