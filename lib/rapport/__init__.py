"""Rapport's shared package: settings, logging, telemetry, contracts, graph schema, Kafka set-up."""
