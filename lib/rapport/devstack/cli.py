"""Command line: python -m rapport.devstack {up,down,status,clean}."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from rapport.devstack.errors import ConfigError, StackError
from rapport.devstack.settings import Settings
from rapport.devstack.stack import ServerStatus, Stack

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_NOT_RUNNING = 3

_ENV_HELP = """
environment:
  RAPPORT_STATE_DIR              state and logs (default <repo>/.rapport)
  RAPPORT_CACHE_DIR              jar cache (default ~/.cache/rapport/jars)
  RAPPORT_KAFKA_PORT             local Kafka PLAINTEXT port (default 9092)
  RAPPORT_KAFKA_CONTROLLER_PORT  local KRaft controller port (default 9093)
  RAPPORT_NEO4J_BOLT_PORT        local Neo4j Bolt port (default 7687)
  RAPPORT_KAFKA_BOOTSTRAP        use this Kafka instead of starting one
  RAPPORT_NEO4J_URI              use this Neo4j instead of starting one
  RAPPORT_NEO4J_USER             Neo4j user (default neo4j)
  RAPPORT_NEO4J_PASSWORD         Neo4j password (default rapport-local; seeds a new local server)
  RAPPORT_KAFKA_HEAP, RAPPORT_NEO4J_HEAP, RAPPORT_NEO4J_PAGECACHE, RAPPORT_NEO4J_TX_TIMEOUT,
  RAPPORT_READY_TIMEOUT (s, default 120), RAPPORT_STOP_GRACE (s, default 30), RAPPORT_JAVA, RAPPORT_MVN
exit codes: 0 ok, 1 failure, 2 bad configuration, 3 (status) not everything is running
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rapport.devstack",
        description="Local Kafka (KRaft) and Neo4j servers for Rapport, run from Maven Central jars.",
        epilog=_ENV_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{up,down,status,clean}")
    sub.add_parser("up", help="start the servers (no-op for those already running) and wait until they answer")
    sub.add_parser("down", help="stop the servers of this state folder")
    sub.add_parser("status", help="show each server's state; exit 3 unless all are running")
    sub.add_parser("clean", help="down, then delete the state folder (keeps the jar cache)")
    return parser


def _print_status(statuses: Sequence[ServerStatus]) -> None:
    for st in statuses:
        pid = f"pid {st.pid}" if st.pid else "-"
        print(f"{st.name:<6} {st.state:<13} {pid:<11} {st.address:<24} {st.detail}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("devstack: %(message)s"))
    logger = logging.getLogger("rapport.devstack")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

    try:
        settings = Settings.from_env()
        stack = Stack(settings)
        began = time.monotonic()
        if args.command == "up":
            statuses = stack.up()
            logger.info("stack ready in %.1f s", time.monotonic() - began)
            _print_status(statuses)
        elif args.command == "down":
            stack.down()
        elif args.command == "clean":
            stack.clean()
        else:
            statuses = stack.status()
            _print_status(statuses)
            return EXIT_OK if all(st.ok for st in statuses) else EXIT_NOT_RUNNING
    except ConfigError as exc:
        logger.error("configuration error: %s", exc)
        return EXIT_CONFIG
    except StackError as exc:
        logger.error("%s failed: %s", args.command, exc)
        return EXIT_FAILED
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    return EXIT_OK
