"""All Cypher and all Kafka of the router."""
