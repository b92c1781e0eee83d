# ruff: noqa: E501
"""`rapport emit`, `rapport dlq [replay]` and `rapport status`: operating Rapport from a shell.

    rapport emit --id email:ana@example.com --channel chat --kind message --topic billing
    rapport emit --event '{"eventId": "e-1", "channel": "CHANNEL_EMAIL", ...}'   (or --event @file.json, --event -)
    rapport dlq                       dead-lettered records with their reasons
    rapport dlq replay 0:12 0:13      send those records back to the interactions topic after a fix
    rapport status                    Kafka and Neo4j, the services' health, the profile group's lag

Kafka settings and topic names come from RAPPORT_KAFKA_* / RAPPORT_*_TOPIC; service addresses
from RAPPORT_PROFILE_ADDR, RAPPORT_TIMELINE_ADDR, RAPPORT_ROUTER_ADDR and
RAPPORT_PROFILE_WORKER_PORT. Exit codes: 0 ok, 1 failure (a server down, Kafka unreachable),
2 bad input or not found.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from google.protobuf.json_format import Parse, ParseError
from rich.console import Console
from rich.table import Table

from rapport.events import InvalidEvent, decode, validate
from rapport.identity import InvalidIdentifier, kind_from_name
from rapport.settings import PROFILE_PORT, PROFILE_WORKER_WEB_PORT, ROUTER_PORT, TIMELINE_PORT, KafkaSettings
from rapport.v1 import events_pb2

JSON = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]
DLQ_PREFIX = "rapport.dlq."


class BadInput(ValueError):
    """What the user typed cannot be used; the message says how to fix it (exit 2)."""


def _enum_value(enum: Any, name: str, what: str) -> int:
    prefix = enum.Name(0).removesuffix("UNSPECIFIED")
    text = name.strip().upper().replace("-", "_").replace(" ", "_")
    for candidate in (text, prefix + text):
        if candidate in list(enum.keys()) and candidate != enum.Name(0):
            return int(enum.Value(candidate))
    names = [n.removeprefix(prefix).lower() for n in enum.keys()[1:]]
    raise BadInput(f"{what} {name!r} is not one of {', '.join(names)}")


def parse_identifier(text: str, verified: bool = False) -> events_pb2.Identifier:
    """`email:ana@example.com`, `phone:+44...`, `social:x/ana`, `crm:C-1`; a bare email or phone works."""
    kind_name, sep, value = text.strip().partition(":")
    if not sep or "@" in kind_name:
        kind_name, value = ("email", text.strip()) if "@" in text else ("phone", text.strip())
    try:
        kind = kind_from_name(kind_name)
    except InvalidIdentifier as exc:
        raise BadInput(f"--id {text!r}: {exc.reason}") from None
    platform = ""
    if kind == events_pb2.IDENTIFIER_KIND_SOCIAL_HANDLE and "/" in value:
        platform, _, value = value.partition("/")
    if not value:
        raise BadInput(f"--id {text!r} has no value; write it as kind:value, e.g. email:ana@example.com")
    return events_pb2.Identifier(kind=kind, value=value, platform=platform, verified=verified)  # type: ignore[arg-type]


def _load_json_text(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                return f.read()
        except OSError as exc:
            raise BadInput(f"cannot read {text[1:]}: {exc.strerror}") from None
    return text


def build_event(
    *,
    event_json: str | None = None,
    identifiers: list[str] = [],  # noqa: B006 - read only
    channel: str = "",
    kind: str = "",
    direction: str = "",
    topic: str = "",
    summary: str = "",
    agent_id: str = "",
    outcome: str = "",
    event_id: str = "",
    at: str = "",
    verified: bool = False,
    source: str = "rapport-cli",
) -> events_pb2.InteractionEvent:
    """An InteractionEvent from JSON (proto3 JSON mapping) and/or flags; flags override the JSON.

    Fills in event_id (a UUID) and occurred_at (now) when missing, then validates; BadInput says
    what is wrong.
    """
    event = events_pb2.InteractionEvent()
    if event_json:
        try:
            Parse(_load_json_text(event_json), event)
        except ParseError as exc:
            raise BadInput(f"--event is not an InteractionEvent in JSON: {exc}") from None
    if identifiers:
        event.ClearField("identifiers")
        event.identifiers.extend(parse_identifier(i, verified) for i in identifiers)
    if channel:
        event.channel = _enum_value(events_pb2.Channel, channel, "channel")  # type: ignore[assignment]
    if kind:
        event.kind = _enum_value(events_pb2.InteractionKind, kind, "kind")  # type: ignore[assignment]
    if direction:
        event.direction = _enum_value(events_pb2.Direction, direction, "direction")  # type: ignore[assignment]
    if outcome:
        event.outcome = _enum_value(events_pb2.Outcome, outcome, "outcome")  # type: ignore[assignment]
    for name, value in (("topic", topic), ("summary", summary), ("agent_id", agent_id), ("event_id", event_id)):
        if value:
            setattr(event, name, value)
    if not event.source:
        event.source = source
    if not event.event_id:
        event.event_id = uuid.uuid4().hex
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            raise BadInput(f"--at {at!r} is not an ISO 8601 time, e.g. 2025-01-06T09:00:00+00:00") from None
        event.occurred_at.FromDatetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    elif not event.HasField("occurred_at"):
        event.occurred_at.FromDatetime(datetime.now(UTC))
    try:
        validate(event)
    except InvalidEvent as exc:
        hint = " (add --id kind:value)" if exc.field == "identifiers" else ""
        raise BadInput(f"the event is invalid: {exc.field}: {exc.reason}{hint}") from None
    return event


def parse_position(text: str) -> tuple[int, int]:
    """`3:120` -> (3, 120): a record of the dead-letter topic by partition and offset."""
    part, sep, offset = text.strip().partition(":")
    if not sep or not part.isdigit() or not offset.isdigit():
        raise BadInput(f"{text!r} is not PARTITION:OFFSET, e.g. 0:12 (see `rapport dlq` for the positions)")
    return int(part), int(offset)


def dlq_entry(partition: int, offset: int, headers: list[tuple[str, bytes]], value: bytes | None) -> dict[str, Any]:
    """One dead-lettered record as shown: its position, the rapport.dlq.* headers and the event id if any."""
    found = {k.removeprefix(DLQ_PREFIX): v.decode(errors="replace") for k, v in headers if k.startswith(DLQ_PREFIX)}
    event_id = ""
    if value:
        try:
            event_id = decode(value).event_id
        except InvalidEvent:
            event_id = ""
    return {
        "position": f"{partition}:{offset}",
        "partition": partition,
        "offset": offset,
        "event_id": event_id,
        "error": found.get("error", ""),
        "field": found.get("field", ""),
        "reason": found.get("reason", ""),
        "source": f"{found.get('source.topic', '?')}/{found.get('source.partition', '?')}:{found.get('source.offset', '?')}",
        "consumer_group": found.get("consumer.group", ""),
        "bytes": len(value or b""),
    }


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _kafka_hint(settings: KafkaSettings) -> str:
    return f"is Kafka up at {settings.bootstrap_servers}? Try `rapport status` or `make up`"


# -- emit -----------------------------------------------------------------------------------------
def emit(
    *,
    event: Annotated[str | None, typer.Option("--event", help="The event as JSON, @FILE or - (stdin).")] = None,
    identifier: Annotated[list[str], typer.Option("--id", help="kind:value, e.g. email:ana@example.com; repeat.")] = [],  # noqa: B006
    verified: Annotated[bool, typer.Option(help="Mark the --id identifiers verified.")] = False,
    channel: Annotated[str, typer.Option(help="voice, email, chat, sms, social, web, app, bot, device ...")] = "",
    kind: Annotated[str, typer.Option(help="message, call, article_view, bot_turn, device_alert ...")] = "",
    direction: Annotated[str, typer.Option(help="inbound, outbound or internal.")] = "",
    topic: Annotated[str, typer.Option(help="What it was about, e.g. billing.")] = "",
    summary: Annotated[str, typer.Option(help="Short free text.")] = "",
    agent: Annotated[str, typer.Option(help="The agent who handled it.")] = "",
    outcome: Annotated[str, typer.Option(help="resolved, unresolved, escalated ...")] = "",
    event_id: Annotated[str, typer.Option("--event-id", help="Idempotency key (default: a UUID).")] = "",
    at: Annotated[str, typer.Option(help="When it happened, ISO 8601 (default: now).")] = "",
    as_json: JSON = False,
) -> None:
    """Publish one InteractionEvent to the interactions topic, from flags or JSON."""
    from rapport.publisher import InteractionPublisher

    try:
        message = build_event(
            event_json=event,
            identifiers=identifier,
            channel=channel,
            kind=kind,
            direction=direction,
            topic=topic,
            summary=summary,
            agent_id=agent,
            outcome=outcome,
            event_id=event_id,
            at=at,
            verified=verified,
        )
    except BadInput as exc:
        raise _fail(str(exc), 2) from None
    settings = KafkaSettings.from_env()
    try:
        with InteractionPublisher(settings) as publisher:
            meta = publisher.publish_sync(message)
    except Exception as exc:  # noqa: BLE001 - any delivery failure is reported the same way
        raise _fail(f"could not publish: {exc}; {_kafka_hint(settings)}") from None
    result = {"event_id": message.event_id, "topic": meta.topic, "partition": meta.partition, "offset": meta.offset}
    if as_json:
        typer.echo(json.dumps(result))
    else:
        typer.echo(f"published {message.event_id} to {meta.topic} partition {meta.partition} offset {meta.offset}")


# -- dlq ------------------------------------------------------------------------------------------
dlq = typer.Typer(help="Dead-lettered records with their reasons; replay chosen ones after a fix.")


def _read_dlq(settings: KafkaSettings, limit: int) -> list[dict[str, Any]]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
        request_timeout_ms=int(settings.request_timeout * 1000),
    )
    try:
        partitions = consumer.partitions_for_topic(settings.dead_letter_topic)
        if partitions is None:
            return []
        tps = [TopicPartition(settings.dead_letter_topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        starts = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(starts[tp], ends[tp] - limit))
        out: list[dict[str, Any]] = []
        remaining = {tp.partition for tp in tps if consumer.position(tp) < ends[tp]}
        for record in consumer:
            out.append(dlq_entry(record.partition, record.offset, list(record.headers or []), record.value))
            tp = TopicPartition(record.topic, record.partition)
            if record.offset + 1 >= ends[tp]:
                remaining.discard(record.partition)
            if not remaining:
                break
        return sorted(out, key=lambda e: (e["partition"], e["offset"]))[-limit:]
    finally:
        consumer.close()


@dlq.callback(invoke_without_command=True)
def dlq_list(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(help="At most this many records (the newest).")] = 50,
    as_json: JSON = False,
) -> None:
    """List dead-lettered records (newest last) with their reasons."""
    if ctx.invoked_subcommand is not None:
        return
    settings = KafkaSettings.from_env()
    try:
        entries = _read_dlq(settings, limit)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"cannot read {settings.dead_letter_topic}: {exc}; {_kafka_hint(settings)}") from None
    if as_json:
        typer.echo(json.dumps(entries, indent=2))
        return
    if not entries:
        typer.echo(f"no dead-lettered records in {settings.dead_letter_topic}")
        return
    table = Table("position", "event", "field", "reason", "from")
    for e in entries:
        table.add_row(e["position"], e["event_id"] or "-", e["field"] or "-", e["reason"] or e["error"], e["source"])
    Console().print(table)
    typer.echo("replay after a fix: rapport dlq replay PARTITION:OFFSET ...")


def fetch_records(settings: KafkaSettings, positions: list[tuple[int, int]]) -> dict[tuple[int, int], Any]:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        request_timeout_ms=int(settings.request_timeout * 1000),
    )
    found: dict[tuple[int, int], Any] = {}
    try:
        for partition, offset in positions:
            tp = TopicPartition(settings.dead_letter_topic, partition)
            consumer.assign([tp])
            consumer.seek(tp, offset)
            batch = consumer.poll(timeout_ms=3000, max_records=1)
            for record in batch.get(tp, []):
                if record.offset == offset:
                    found[(partition, offset)] = record
        return found
    finally:
        consumer.close()


@dlq.command("replay")
def dlq_replay(
    positions: Annotated[list[str], typer.Argument(help="PARTITION:OFFSET of each record, from `rapport dlq`.")],
    as_json: JSON = False,
) -> None:
    """Send chosen dead-lettered records back to the interactions topic (without the rapport.dlq.* headers)."""
    from kafka import KafkaProducer

    try:
        wanted = [parse_position(p) for p in positions]
    except BadInput as exc:
        raise _fail(str(exc), 2) from None
    settings = KafkaSettings.from_env()
    try:
        records = fetch_records(settings, wanted)
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"cannot read {settings.dead_letter_topic}: {exc}; {_kafka_hint(settings)}") from None
    missing = [f"{p}:{o}" for p, o in wanted if (p, o) not in records]
    if missing:
        raise _fail(f"no dead-lettered record at {', '.join(missing)}; `rapport dlq` lists the positions", 2)
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all")
    results = []
    try:
        for (p, o), record in records.items():
            headers = [(k, v) for k, v in (record.headers or []) if not k.startswith(DLQ_PREFIX)]
            meta = producer.send(settings.interactions_topic, key=record.key, value=record.value, headers=headers).get(
                settings.request_timeout
            )
            results.append(
                {"from": f"{p}:{o}", "topic": meta.topic, "partition": meta.partition, "offset": meta.offset}
            )
    except Exception as exc:  # noqa: BLE001
        raise _fail(f"replay failed after {len(results)} record(s): {exc}; {_kafka_hint(settings)}") from None
    finally:
        producer.close()
    if as_json:
        typer.echo(json.dumps(results))
        return
    for r in results:
        typer.echo(f"replayed {r['from']} to {r['topic']} partition {r['partition']} offset {r['offset']}")


# -- status ---------------------------------------------------------------------------------------
def _service_addresses() -> dict[str, str]:
    return {
        "profile": os.environ.get("RAPPORT_PROFILE_ADDR") or f"127.0.0.1:{PROFILE_PORT}",
        "timeline": os.environ.get("RAPPORT_TIMELINE_ADDR") or f"127.0.0.1:{TIMELINE_PORT}",
        "router": os.environ.get("RAPPORT_ROUTER_ADDR") or f"127.0.0.1:{ROUTER_PORT}",
    }


def status(as_json: JSON = False) -> None:
    """Kafka and Neo4j (local stack or external), each service's health, and the profile worker's lag."""
    from rapport.demo.kafka_info import KafkaInfo
    from rapport.demo.processes import grpc_serving, worker_health
    from rapport.devstack import Settings, Stack

    rows: list[dict[str, Any]] = []
    try:
        for st in Stack(Settings.from_env()).status():
            rows.append({"name": st.name, "kind": "server", "ok": st.ok, "state": st.state, "address": st.address})
    except Exception as exc:  # noqa: BLE001
        rows.append({"name": "devstack", "kind": "server", "ok": False, "state": f"unknown: {exc}", "address": ""})
    for name, address in _service_addresses().items():
        ok = grpc_serving(address, timeout=2.0)
        rows.append(
            {"name": name, "kind": "grpc", "ok": ok, "state": "serving" if ok else "not serving", "address": address}
        )
    port = int(os.environ.get("RAPPORT_PROFILE_WORKER_PORT") or PROFILE_WORKER_WEB_PORT)
    code, body = worker_health(port, "/ready")
    state = {0: "not answering", 200: "ready"}.get(code, f"degraded ({body.get('last_error') or code})")
    rows.append({"name": "worker", "kind": "http", "ok": code == 200, "state": state, "address": f"127.0.0.1:{port}"})
    settings = KafkaSettings.from_env()
    group = os.environ.get("RAPPORT_PROFILE_GROUP", "rapport-profile")
    try:
        with KafkaInfo(settings) as info:
            lag = info.lag(group, settings.interactions_topic)
            dead = info.record_count(settings.dead_letter_topic)
        rows.append({"name": "lag", "kind": "kafka", "ok": True, "state": "no offsets yet" if lag is None else str(lag),
                     "address": f"group {group} on {settings.interactions_topic}", "lag": lag})  # fmt: skip
        rows.append(
            {"name": "dlq", "kind": "kafka", "ok": True, "state": str(dead), "address": settings.dead_letter_topic}
        )
    except Exception as exc:  # noqa: BLE001
        rows.append(
            {
                "name": "lag",
                "kind": "kafka",
                "ok": False,
                "state": f"unknown: {exc}",
                "address": settings.bootstrap_servers,
            }
        )
    healthy = all(r["ok"] for r in rows)
    if as_json:
        typer.echo(json.dumps({"ok": healthy, "checks": rows}, indent=2))
    else:
        table = Table("check", "ok", "state", "where")
        for r in rows:
            table.add_row(r["name"], "yes" if r["ok"] else "NO", r["state"], r["address"])
        Console().print(table)
        if not healthy:
            typer.echo("something is down: `make up` starts Kafka and Neo4j; `make demo` starts the services", err=True)
    if not healthy:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("emit")(emit)
    app.add_typer(dlq, name="dlq")
    app.command("status")(status)
