"""The worker's settings for proactive device cases and self-service escalations, from the
environment (read with the rest of rapport_profile.config, once, in `main`).

RAPPORT_PROFILE_OUTREACH_SEVERITY      lowest alert severity that calls for an agent's outreach; lower
                                       severities get an app notification (warning)
RAPPORT_PROFILE_ATTACH_HOURS           hours after a case's last alert during which the customer's new
                                       contacts join it (72)
RAPPORT_PROFILE_CONTACT_MAX_AGE_HOURS  older events (by event time) create no contact (24)
RAPPORT_PROFILE_OUTREACH_CHANNEL       channel of outreach contacts (voice)
RAPPORT_PROFILE_OUTREACH_TEAM          team (queue) of outreach contacts; empty: any team
RAPPORT_PROFILE_OUTREACH_PRIORITY      router priority per severity (warning=3,critical=6)
RAPPORT_PROFILE_OUTREACH_RELAXATION    relaxation policy of outreach contacts (60=any_skill;180=any_language)
RAPPORT_PROFILE_NOTIFICATION_CHANNEL   channel of notifications (app)
RAPPORT_PROFILE_ESCALATION_CHANNEL     channel of escalation contacts (chat)
RAPPORT_PROFILE_ESCALATION_TEAM        team (queue) of escalation contacts; empty: any team
RAPPORT_PROFILE_ESCALATION_PRIORITY    router priority of escalation contacts (2)
RAPPORT_PROFILE_ESCALATION_RELAXATION  relaxation policy of escalation contacts (90=any_language)
RAPPORT_PROFILE_ESCALATION_EXITS       exit reasons that escalate
                                       (abandoned,asked_for_agent,error,gave_up,no_match,timeout)

The rules they tune are described in rapport_profile.domain.proactive.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from rapport_profile.domain.proactive import ProactiveSettings

PREFIX = "RAPPORT_PROFILE_"


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    return env.get(PREFIX + name, "").strip() or default


def _hours(env: Mapping[str, str], name: str, default: timedelta) -> timedelta:
    raw = _text(env, name, "")
    if not raw:
        return default
    try:
        hours = float(raw)
    except ValueError:
        raise ValueError(f"{PREFIX}{name} must be a number of hours, got {raw!r}") from None
    if not hours >= 0:
        raise ValueError(f"{PREFIX}{name} must be 0 or more, got {raw!r}")
    return timedelta(hours=hours)


def _priority(raw: str, name: str) -> int:
    if not raw.strip().isdigit():
        raise ValueError(f"{PREFIX}{name} must be a priority 0..10, got {raw!r}")
    return int(raw)


def _priorities(env: Mapping[str, str], name: str, default: Mapping[str, int]) -> dict[str, int]:
    raw = _text(env, name, "")
    if not raw:
        return dict(default)
    out: dict[str, int] = {}
    for item in raw.split(","):
        severity, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"{PREFIX}{name} must look like 'warning=3,critical=6', got {raw!r}")
        out[severity.strip().lower()] = _priority(value, name)
    return out


def proactive_settings(env: Mapping[str, str]) -> ProactiveSettings:
    d = ProactiveSettings()
    exits = _text(env, "ESCALATION_EXITS", "")
    settings = ProactiveSettings(
        outreach_severity=_text(env, "OUTREACH_SEVERITY", d.outreach_severity).lower(),
        attach_window=_hours(env, "ATTACH_HOURS", d.attach_window),
        contact_max_age=_hours(env, "CONTACT_MAX_AGE_HOURS", d.contact_max_age),
        outreach_channel=_text(env, "OUTREACH_CHANNEL", d.outreach_channel).lower(),
        outreach_team=_text(env, "OUTREACH_TEAM", "") or None,
        outreach_priority=_priorities(env, "OUTREACH_PRIORITY", d.outreach_priority),
        outreach_relaxation=_text(env, "OUTREACH_RELAXATION", d.outreach_relaxation),
        notification_channel=_text(env, "NOTIFICATION_CHANNEL", d.notification_channel).lower(),
        escalation_channel=_text(env, "ESCALATION_CHANNEL", d.escalation_channel).lower(),
        escalation_team=_text(env, "ESCALATION_TEAM", "") or None,
        escalation_priority=_priority(
            _text(env, "ESCALATION_PRIORITY", str(d.escalation_priority)), "ESCALATION_PRIORITY"
        ),
        escalation_relaxation=_text(env, "ESCALATION_RELAXATION", d.escalation_relaxation),
        escalating_exits=frozenset(e.strip().lower() for e in exits.split(",") if e.strip())
        if exits
        else d.escalating_exits,
    )
    try:
        return settings.checked()
    except ValueError as exc:
        raise ValueError(f"{PREFIX}*: {exc}") from None
