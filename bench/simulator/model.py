"""The simulated world: agents, customers, arrivals, and the hidden ground-truth outcome model.

Everything here is drawn from one seed. The router never sees `true_skill`, `rapport` or the
outcome formula; it only sees the declared (noisy) skill levels, the contact's topic, channel
and language, and the outcomes that flow back through CompleteContact.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

TOPICS = ("billing", "technical", "account", "shipping", "returns")
CHANNELS = ("voice", "chat")
LANGUAGES = ("en", "es")
TIERS = ("standard", "standard", "standard", "gold", "platinum")
SEGMENTS = ("consumer", "small_business", "enterprise")
DEVICES = ("phone_a", "phone_b", "tablet_c", "router_d")
# Mean handle minutes by channel (chat is slower but concurrent).
HANDLE_MINUTES = {"voice": 6.0, "chat": 9.0}
# Mean patience minutes before abandoning a queue.
PATIENCE_MINUTES = {"voice": 3.0, "chat": 6.0}


@dataclass(frozen=True)
class SimConfig:
    seed: int = 1
    hours: float = 3.0
    agents: int = 12
    customers: int = 150
    # Contacts per hour at the baseline and at the peak (mid-run).
    base_rate: float = 70.0
    peak_rate: float = 130.0
    chat_share: float = 0.45
    spanish_share: float = 0.2
    # Standard deviation of the noise on declared skill levels (in levels).
    skill_noise: float = 1.0
    # Standard deviation of the persistent customer-agent rapport (logit units).
    rapport_sd: float = 1.0
    # Probability that an unresolved contact calls back, and the mean delay (minutes).
    callback_prob: float = 0.6
    callback_minutes: float = 30.0


@dataclass
class Agent:
    index: int
    id: str
    true_skill: dict[str, float]
    declared: dict[str, int]
    languages: tuple[str, ...]
    capacity: dict[str, int]
    speed: float


@dataclass
class Customer:
    index: int
    id: str
    language: str
    tier: str
    segment: str
    device: str
    topics: tuple[str, ...]
    topic_weights: tuple[float, ...]


@dataclass
class Arrival:
    index: int
    time: float  # simulated seconds since the start
    customer: int
    channel: str
    topic: str
    patience: float
    # Common random numbers: each policy sees the same draws for the same contact.
    u_resolve: float
    u_csat: float
    u_handle: float
    u_callback: float
    callback_delay: float
    parent: int = -1


@dataclass
class World:
    config: SimConfig
    agents: list[Agent]
    customers: list[Customer]
    rapport: np.ndarray  # (customers, agents), hidden
    arrivals: list[Arrival] = field(default_factory=list)
    # Each customer's share of the arrivals.
    popularity: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # 0 for the measured run; another number gives a prior period callbacks of its own.
    stream: int = 0
    _extra_rng: np.random.Generator | None = None

    def callback_arrival(self, parent: Arrival, at: float, index: int) -> Arrival:
        """A deterministic follow-up contact of an unresolved one (same customer and topic)."""
        key = [self.config.seed, 7919, parent.index, index] + ([self.stream] if self.stream else [])
        rng = np.random.default_rng(key)
        return _arrival(rng, index, at, parent.customer, parent.channel, parent.topic, parent=parent.index)


def _arrival(
    rng: np.random.Generator, index: int, at: float, customer: int, channel: str, topic: str, parent: int = -1
) -> Arrival:
    return Arrival(
        index=index,
        time=at,
        customer=customer,
        channel=channel,
        topic=topic,
        patience=float(rng.exponential(PATIENCE_MINUTES[channel] * 60)),
        u_resolve=float(rng.random()),
        u_csat=float(rng.normal()),
        u_handle=float(rng.normal()),
        u_callback=float(rng.random()),
        callback_delay=float(rng.exponential(1.0)),
        parent=parent,
    )


def build_world(config: SimConfig, prefix: str = "sim") -> World:
    rng = np.random.default_rng(config.seed)
    agents = []
    for i in range(config.agents):
        true = {t: float(rng.beta(2.0, 2.0)) for t in TOPICS}
        declared = {
            t: int(np.clip(round(1 + 4 * s + rng.normal(0, config.skill_noise)), 1, 5)) for t, s in true.items()
        }
        languages: tuple[str, ...] = ("en",) if rng.random() > 0.35 else ("en", "es")
        if i % 6 == 5:
            languages = ("es", "en")  # native Spanish speakers
        kind = i % 3
        capacity = (
            {"voice": 1, "chat": 0} if kind == 0 else {"voice": 0, "chat": 2} if kind == 1 else {"voice": 1, "chat": 1}
        )
        agents.append(
            Agent(i, f"{prefix}-a{i:03d}", true, declared, languages, capacity, float(rng.lognormal(0, 0.15)))
        )
    customers = []
    for j in range(config.customers):
        k = int(rng.integers(1, 3))
        topics = tuple(str(t) for t in rng.choice(TOPICS, size=k, replace=False))
        weights = tuple(float(w) for w in rng.dirichlet(np.ones(k)))
        customers.append(
            Customer(
                j,
                f"{prefix}-c{j:04d}",
                "es" if rng.random() < config.spanish_share else "en",
                str(rng.choice(TIERS)),
                str(rng.choice(SEGMENTS)),
                str(rng.choice(DEVICES)),
                topics,
                weights,
            )
        )
    rapport = rng.normal(0.0, config.rapport_sd, size=(config.customers, config.agents))
    popularity = rng.zipf(1.6, size=config.customers).astype(float)
    popularity = np.minimum(popularity, 20) / np.minimum(popularity, 20).sum()
    world = World(config, agents, customers, rapport, popularity=popularity)
    world.arrivals = _draw_arrivals(rng, config, customers, popularity)
    return world


def _draw_arrivals(
    rng: np.random.Generator, config: SimConfig, customers: list[Customer], popularity: np.ndarray
) -> list[Arrival]:
    """A non-homogeneous Poisson process (thinning) with a peak mid-run."""
    arrivals: list[Arrival] = []
    horizon = config.hours * 3600
    t = 0.0
    while True:
        t += float(rng.exponential(3600 / config.peak_rate))
        if t >= horizon:
            break
        if rng.random() > rate_at(config, t) / config.peak_rate:
            continue
        customer = int(rng.choice(config.customers, p=popularity))
        c = customers[customer]
        topic = str(rng.choice(c.topics, p=c.topic_weights))
        channel = "chat" if rng.random() < config.chat_share else "voice"
        arrivals.append(_arrival(rng, len(arrivals), t, customer, channel, topic))
    return arrivals


def prior_period(world: World, hours: float) -> World:
    """The same agents, customers and hidden rapport over an earlier stretch of `hours`, with
    arrivals of their own: the history a production graph would already hold."""
    config = replace(world.config, hours=hours)
    rng = np.random.default_rng([world.config.seed, 4801])
    prior = World(config, world.agents, world.customers, world.rapport, popularity=world.popularity, stream=1)
    prior.arrivals = _draw_arrivals(rng, config, world.customers, world.popularity)
    return prior


def rate_at(config: SimConfig, t: float) -> float:
    horizon = config.hours * 3600
    width = horizon / 6
    return config.base_rate + (config.peak_rate - config.base_rate) * math.exp(-(((t - horizon / 2) / width) ** 2))


@dataclass(frozen=True)
class Outcome:
    resolved: bool
    csat: int
    handle_seconds: float
    p_resolve: float


def resolve_probability(world: World, arrival: Arrival, agent: Agent, load: int) -> float:
    """The hidden model's chance that `agent` resolves `arrival` while holding `load` other contacts."""
    customer = world.customers[arrival.customer]
    skill = agent.true_skill[arrival.topic]
    if customer.language == agent.languages[0]:
        language = 0.3
    elif customer.language in agent.languages:
        language = -0.2
    else:
        language = -1.2
    logit = -1.6 + 3.6 * skill + world.rapport[customer.index, agent.index] + language - 0.4 * load
    return 1 / (1 + math.exp(-logit))


def outcome(world: World, arrival: Arrival, agent: Agent, load: int, wait: float) -> Outcome:
    p = resolve_probability(world, arrival, agent, load)
    resolved = arrival.u_resolve < p
    rapport = world.rapport[arrival.customer, agent.index]
    score = 2.0 + 2.0 * resolved + 0.5 * rapport - min(1.5, wait / 300) + 0.7 * arrival.u_csat
    csat = int(np.clip(round(score), 1, 5))
    skill = agent.true_skill[arrival.topic]
    minutes = HANDLE_MINUTES[arrival.channel] * agent.speed * (1.25 - 0.5 * skill) * (1 + 0.2 * load)
    handle = max(30.0, minutes * 60 * math.exp(0.3 * arrival.u_handle))
    return Outcome(resolved, csat, handle, p)
