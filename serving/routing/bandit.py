"""Thompson sampling over the arms of a bandit route table, Beta-Bernoulli on feedback rewards.

Each arm (a variant name and its model version) keeps a Beta(alpha, beta) posterior of its reward
rate. A reward r in [0, 1] adds r to alpha and 1 - r to beta (0/1 rewards are the Bernoulli case).
Every arm keeps at least `min_share` of the traffic: with probability n * min_share a request goes
to an arm drawn uniformly, otherwise to the arm whose posterior draw is largest. The state is
persisted in the prediction log's database (table `bandit_arms`), so a restart resumes it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from mlgate.serving.settings import BanditConfig


@dataclass(frozen=True)
class Arm:
    """An arm's posterior: Beta(alpha, beta), after `pulls` rewards."""

    variant: str
    model_version: str
    alpha: float
    beta: float
    pulls: int = 0

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)

    @property
    def key(self) -> tuple[str, str]:
        return (self.variant, self.model_version)


ArmSaver = Callable[[Arm], None]  # called after every update, e.g. to persist the arm


class ThompsonBandit:
    """Chooses among arms by posterior draws, each arm with a guaranteed minimum share."""

    def __init__(self, config: BanditConfig, rng: random.Random, save: ArmSaver | None = None) -> None:
        self.config = config
        self._rng = rng
        self._save = save or (lambda arm: None)
        self._arms: dict[tuple[str, str], Arm] = {}

    def restore(self, arms: Iterable[Arm]) -> None:
        """Resume persisted posteriors (at startup, before any request)."""
        for arm in arms:
            self._arms[arm.key] = arm

    def arm(self, variant: str, model_version: str) -> Arm:
        """The arm's posterior (the prior when it has no reward yet)."""
        found = self._arms.get((variant, model_version))
        return found or Arm(variant, model_version, self.config.prior_alpha, self.config.prior_beta)

    def choose(self, arms: Sequence[tuple[str, str]]) -> str:
        """The variant name of the arm to serve, from `(variant, model_version)` pairs."""
        if len(arms) == 1:
            return arms[0][0]
        if self._rng.random() < len(arms) * self.config.min_share:
            return arms[self._rng.randrange(len(arms))][0]
        draws = [(self._draw(self.arm(*pair)), pair[0]) for pair in arms]
        return max(draws)[1]

    def _draw(self, arm: Arm) -> float:
        return self._rng.betavariate(arm.alpha, arm.beta)

    def update(self, variant: str, model_version: str, reward: float) -> Arm:
        """Add one reward in [0, 1] to the arm's posterior; ValueError outside [0, 1]."""
        if not 0.0 <= reward <= 1.0:
            raise ValueError(f"a bandit reward must be in [0, 1], got {reward}")
        old = self.arm(variant, model_version)
        new = Arm(variant, model_version, old.alpha + reward, old.beta + 1.0 - reward, old.pulls + 1)
        self._arms[new.key] = new
        self._save(new)
        return new

    def arms(self) -> list[Arm]:
        return sorted(self._arms.values(), key=lambda a: a.key)

    def share_of(self, arms: Sequence[tuple[str, str]], draws: int = 4000) -> dict[str, float]:
        """Monte Carlo estimate of each arm's traffic share under the current posteriors."""
        probe = ThompsonBandit(self.config, random.Random(0))
        probe._arms = dict(self._arms)
        counts = dict.fromkeys((name for name, _ in arms), 0)
        for _ in range(draws):
            counts[probe.choose(arms)] += 1
        return {name: count / draws for name, count in counts.items()}
