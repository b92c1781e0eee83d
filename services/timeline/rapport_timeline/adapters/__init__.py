"""All Cypher and all Kafka of the timeline service, behind small interfaces."""
