"""Requirements that relax, step by step, while a contact waits (bullseye / proficiency steps).

A policy is written as `<seconds>=<action>[,<action>...]` steps separated by `;`, e.g.

    30=skill_levels-1; 90=skill_levels-2,any_language; 180=any_skill

Steps are cumulative: after 100 s of waiting, the contact above accepts agents two levels below
each required skill level, speaking any language. Actions:

- `skill_levels-N`: every required minimum skill level drops by N (never below 1);
- `any_language`: the language requirement is dropped;
- `any_skill`: required skills are dropped (the topic skill is still scored);
- `any_team`: the team restriction is dropped.

A contact keeps the policy it was created with (stored on the Contact node), so every router
replica relaxes it the same way, even when their configurations differ.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from rapport_router.domain.model import MIN_SKILL_LEVEL, ContactSpec, SkillNeed

_SKILL_LEVELS = re.compile(r"^skill_levels-(\d)$")
_FLAGS = ("any_language", "any_skill", "any_team")


class InvalidPolicy(ValueError):
    pass


@dataclass(frozen=True)
class RelaxationStep:
    after: float
    lower_skill_levels: int = 0
    any_language: bool = False
    any_skill: bool = False
    any_team: bool = False

    def describe(self) -> str:
        parts = []
        if self.lower_skill_levels:
            parts.append(f"skill levels -{self.lower_skill_levels}")
        if self.any_skill:
            parts.append("any skill")
        if self.any_language:
            parts.append("any language")
        if self.any_team:
            parts.append("any team")
        return ", ".join(parts) or "no change"


@dataclass(frozen=True)
class Requirements:
    """The hard filters in force for a contact at a given relaxation step."""

    channel: str
    team: str | None
    language: str | None
    skills: tuple[SkillNeed, ...]
    # Set while only the preferred agent may take the contact.
    only_agent: str | None
    excluded: frozenset[str]
    step: int


@dataclass(frozen=True)
class RelaxationPolicy:
    # Cumulative steps, sorted by `after`; step k (1-based) is steps[k - 1].
    steps: tuple[RelaxationStep, ...] = ()

    @property
    def text(self) -> str:
        out = []
        previous = RelaxationStep(0.0)
        for s in self.steps:
            actions = []
            if s.lower_skill_levels != previous.lower_skill_levels:
                actions.append(f"skill_levels-{s.lower_skill_levels}")
            actions += [f for f in _FLAGS if getattr(s, f) and not getattr(previous, f)]
            out.append(f"{_seconds(s.after)}={','.join(actions)}")
            previous = s
        return ";".join(out)

    @classmethod
    def parse(cls, text: str) -> RelaxationPolicy:
        text = text.strip()
        if text in ("", "none"):
            return cls(())
        raw_steps: list[tuple[float, list[str]]] = []
        for raw in text.split(";"):
            chunk = raw.strip()
            if not chunk:
                continue
            seconds, sep, actions = chunk.partition("=")
            if not sep:
                raise InvalidPolicy(f"relaxation step {chunk!r} is not <seconds>=<actions>")
            try:
                after = float(seconds.strip().removesuffix("s"))
            except ValueError:
                raise InvalidPolicy(f"relaxation step {chunk!r}: {seconds!r} is not a number of seconds") from None
            if not math.isfinite(after) or after < 0:
                raise InvalidPolicy(f"relaxation step {chunk!r}: seconds must be 0 or more")
            names = [a.strip() for a in actions.split(",") if a.strip()]
            if not names:
                raise InvalidPolicy(f"relaxation step {chunk!r} has no action")
            raw_steps.append((after, names))
        raw_steps.sort(key=lambda s: s[0])
        steps: list[RelaxationStep] = []
        current = RelaxationStep(0.0)
        for after, names in raw_steps:
            lower, flags = current.lower_skill_levels, {f: getattr(current, f) for f in _FLAGS}
            for name in names:
                m = _SKILL_LEVELS.match(name)
                if m:
                    lower = max(lower, int(m.group(1)))
                elif name in _FLAGS:
                    flags[name] = True
                else:
                    raise InvalidPolicy(f"unknown relaxation action {name!r}; use skill_levels-N, {', '.join(_FLAGS)}")
            current = RelaxationStep(after, lower, **flags)
            if steps and steps[-1].after == after:
                steps[-1] = current
            else:
                steps.append(current)
        return cls(tuple(steps))

    def step_at(self, age: float) -> int:
        """0 before the first step; k once `age` reached step k's time."""
        k = 0
        for i, s in enumerate(self.steps, start=1):
            if age >= s.after:
                k = i
        return k

    def describe(self, step: int) -> str:
        if step <= 0:
            return "original requirements"
        return self.steps[step - 1].describe()

    def next_step_after(self, age: float) -> float | None:
        """Seconds of age at which the next step applies, or None after the last."""
        for s in self.steps:
            if s.after > age:
                return s.after
        return None

    def requirements(self, contact: ContactSpec, age: float) -> Requirements:
        step = self.step_at(age)
        relax = self.steps[step - 1] if step else RelaxationStep(0.0)
        skills: tuple[SkillNeed, ...] = ()
        if not relax.any_skill:
            skills = tuple(
                SkillNeed(s.name, max(MIN_SKILL_LEVEL, s.min_level - relax.lower_skill_levels))
                for s in contact.required_skills
            )
        only = contact.preferred_agent_id if contact.preferred_agent_id and age < contact.preferred_wait else None
        return Requirements(
            channel=contact.channel,
            team=None if relax.any_team else contact.team,
            language=None if relax.any_language else contact.language,
            skills=skills,
            only_agent=only,
            excluded=contact.declined_by,
            step=step,
        )


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


DEFAULT_POLICY = RelaxationPolicy.parse("30=skill_levels-1;90=skill_levels-2,any_language;180=any_skill")
