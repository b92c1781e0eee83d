"""Local Kafka and Neo4j servers for development and tests, without Docker.

`python -m rapport.devstack up|down|status|clean`; see deploy/local/README.md.
Library use (e.g. from a test fixture): `Settings.from_env()` gives the addresses clients should use,
`Stack(settings).up()` starts what is missing and waits until both servers answer.
"""

from rapport.devstack.errors import ConfigError, StackError
from rapport.devstack.settings import Settings
from rapport.devstack.stack import ServerStatus, Stack

__all__ = ["ConfigError", "ServerStatus", "Settings", "Stack", "StackError"]
