"""The JourneyService: decode the range, read it, run the report rules, answer.

Served by the profile API server beside the ProfileService (same graph, same deadlines).
"""

from __future__ import annotations

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from rapport.errors import InvalidArgument
from rapport.journeys import report as rules
from rapport.journeys.scan import scan_report
from rapport.v1 import events_pb2, journeys_pb2, journeys_pb2_grpc
from rapport_profile.api.customer_view import enum_value
from rapport_profile.api.journey_reader import NANOS, JourneyReader
from rapport_profile.api.servicer import read_budget

# Timestamps outside 1970..9999 are not a range anyone means.
_MAX_SECONDS = 253_402_300_799


def _instant(value: Timestamp, name: str) -> int:
    if not 0 <= value.seconds <= _MAX_SECONDS or not 0 <= value.nanos < NANOS:
        raise InvalidArgument(name, "must be a valid time between 1970 and 9999")
    return value.seconds * NANOS + value.nanos


def _window(value: Duration) -> int:
    if not -NANOS < value.nanos < NANOS or (value.seconds and value.nanos and (value.seconds < 0) != (value.nanos < 0)):
        raise InvalidArgument("journey_window", "is not a valid duration")
    nanos = value.seconds * NANOS + value.nanos
    if not rules.MIN_JOURNEY_WINDOW <= nanos <= rules.MAX_JOURNEY_WINDOW:
        raise InvalidArgument("journey_window", "must be between 1 hour and 7 days")
    return nanos


def report_query(request: journeys_pb2.GetJourneyReportRequest) -> rules.ReportQuery:
    if not request.HasField("since"):
        raise InvalidArgument("since", "is required")
    if not request.HasField("until"):
        raise InvalidArgument("until", "is required")
    since = _instant(request.since, "since")
    until = _instant(request.until, "until")
    if until <= since:
        raise InvalidArgument("until", "must be after since")
    if until - since > rules.MAX_RANGE:
        raise InvalidArgument("until", f"must be at most {rules.MAX_RANGE // rules.DAY} days after since")
    if not 0 <= request.max_rows <= rules.MAX_ROWS:
        raise InvalidArgument("max_rows", f"must be 0 to {rules.MAX_ROWS}")
    window = _window(request.journey_window) if request.HasField("journey_window") else rules.DEFAULT_JOURNEY_WINDOW
    return rules.ReportQuery(since, until, request.max_rows or rules.DEFAULT_ROWS, window)


def _timestamp(nanos: int) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(nanos)
    return ts


def _duration(nanos: int) -> Duration:
    d = Duration()
    d.FromNanoseconds(nanos)
    return d


def _channel(name: str) -> events_pb2.Channel.ValueType:
    return enum_value(events_pb2.Channel, name)  # type: ignore[no-any-return]


def report_message(report: rules.JourneyReport) -> journeys_pb2.JourneyReport:
    q, t, b = report.query, report.totals, report.bot
    rc, rq, e = report.repeat_contacts, report.repeat_questions, report.effort
    return journeys_pb2.JourneyReport(
        since=_timestamp(q.since),
        until=_timestamp(q.until),
        journey_window=_duration(q.journey_window),
        totals=journeys_pb2.JourneyTotals(
            interactions=t.interactions,
            customers=t.customers,
            touches=t.touches,
            contacts=t.contacts,
            journeys=t.journeys,
            self_service_attempts=t.self_service_attempts,
        ),
        top_intents=[
            journeys_pb2.IntentCount(intent=i.intent, interactions=i.interactions, customers=i.customers)
            for i in report.top_intents
        ],
        issues=[
            journeys_pb2.IssueRank(
                topic=i.topic,
                contacts=i.contacts,
                customers=i.customers,
                unresolved_rate=i.unresolved_rate,
                repeat_contacts=i.repeat_contacts,
                repeat_rate=i.repeat_rate,
                mean_effort=i.mean_effort,
                impact=i.impact,
            )
            for i in report.issues
        ],
        exit_points=[
            journeys_pb2.ExitPoint(
                kind=p.kind,
                id=p.id,
                title=p.title or "",
                attempts=p.attempts,
                failed=p.failed,
                escalations=p.escalations,
                escalation_rate=p.escalation_rate,
                top_exit_step=p.top_exit_step or "",
            )
            for p in report.exit_points
        ],
        channel_mix=[
            journeys_pb2.ChannelShare(
                channel=_channel(c.channel), touches=c.touches, customers=c.customers, share=c.share
            )
            for c in report.channel_mix
        ],
        channel_paths=[
            journeys_pb2.ChannelPath(channels=[_channel(c) for c in p.channels], journeys=p.journeys, share=p.share)
            for p in report.channel_paths
        ],
        bot=journeys_pb2.BotOutcomes(
            journeys=b.journeys,
            handed_off=b.handed_off,
            abandoned=b.abandoned,
            contained=b.contained,
            containment_rate=b.containment_rate,
            handoff_rate=b.handoff_rate,
        ),
        repeat_contacts=journeys_pb2.RepeatContacts(contacts=rc.contacts, repeats=rc.repeats, rate=rc.rate),
        repeat_questions=journeys_pb2.RepeatQuestions(
            facts_given=rq.facts_given,
            given_again=rq.given_again,
            rate=rq.rate,
            top_keys=[journeys_pb2.FactKeyCount(key=k, given_again=n) for k, n in rq.top_keys],
        ),
        effort=journeys_pb2.EffortSummary(
            customers=e.customers, mean_score=e.mean_score, low=e.low, medium=e.medium, high=e.high
        ),
    )


class JourneyServicer(journeys_pb2_grpc.JourneyServiceServicer):
    def __init__(self, reader: JourneyReader, read_timeout: float) -> None:
        self._reader = reader
        # Reads of calls without a deadline get this long.
        self._read_timeout = read_timeout

    def GetJourneyReport(
        self, request: journeys_pb2.GetJourneyReportRequest, context: grpc.ServicerContext
    ) -> journeys_pb2.GetJourneyReportResponse:
        query = report_query(request)
        scan = self._reader.scan(query, read_budget(context, self._read_timeout))
        report = scan_report(scan, query)
        return journeys_pb2.GetJourneyReportResponse(report=report_message(report))
