"""Errors the CLI turns into a message and a non-zero exit code."""

from __future__ import annotations


class StackError(Exception):
    """A server could not be fetched, started, reached or stopped."""


class ConfigError(StackError):
    """The environment asks for something the stack cannot do."""


class NotReady(Exception):
    """One readiness probe did not succeed yet; the caller retries until its deadline."""
