"""Clients' defaults follow the local stack's ports, so a second stack needs no extra variables."""

import pytest

from rapport.devstack.settings import Settings as StackSettings
from rapport.settings import KafkaSettings, Neo4jSettings

pytestmark = pytest.mark.unit


def test_defaults_are_the_default_local_stack():
    assert KafkaSettings.from_env({}).bootstrap_servers == "127.0.0.1:9092"
    assert Neo4jSettings.from_env({}).uri == "bolt://127.0.0.1:7687"


def test_a_moved_local_stack_moves_the_clients_with_it():
    env = {"RAPPORT_KAFKA_PORT": "29092", "RAPPORT_NEO4J_BOLT_PORT": "27687"}
    stack = StackSettings.from_env(env)
    assert KafkaSettings.from_env(env).bootstrap_servers == f"127.0.0.1:{stack.kafka_port}"
    assert Neo4jSettings.from_env(env).uri == f"bolt://127.0.0.1:{stack.neo4j_bolt_port}"


def test_explicit_addresses_win_over_local_ports():
    env = {
        "RAPPORT_KAFKA_PORT": "29092",
        "RAPPORT_KAFKA_BOOTSTRAP": "kafka-1.example:9092",
        "RAPPORT_NEO4J_BOLT_PORT": "27687",
        "RAPPORT_NEO4J_URI": "neo4j://graph.example:7687",
    }
    assert KafkaSettings.from_env(env).bootstrap_servers == "kafka-1.example:9092"
    assert Neo4jSettings.from_env(env).uri == "neo4j://graph.example:7687"


def test_a_bad_port_names_its_variable():
    with pytest.raises(ValueError, match="RAPPORT_NEO4J_BOLT_PORT"):
        Neo4jSettings.from_env({"RAPPORT_NEO4J_BOLT_PORT": "seven"})
