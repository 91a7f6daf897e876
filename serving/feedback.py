"""POST /feedback: labels and rewards joined to logged predictions by request id.

A body is one item `{"request_id", "row_index"?: 0, "label"?, "reward"?, "correction"?: false}`, a
list of them, or `{"feedback": [...]}`. Feedback is idempotent per (request id, row): the first one
stands; the same one again is a duplicate (ignored); a different one is a conflict (stored as such,
counted, reported by the analysis, never replacing the first); only an item with `"correction":
true` replaces it. Each item is matched with what every variant predicted for that row: first
in memory (the most recent requests, so feedback right after a prediction needs no database read),
then in the prediction log. Unknown request ids are counted and reported, never silently dropped.
Known items are written to the feedback table and update the online metrics of each variant that
predicted the row (labels: accuracy; rewards: the answering variant's mean reward) and the bandit
posterior of the answering variant (the reward in [0, 1], or 1/0 for a right/wrong label).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from mlgate.serving.log.prediction_log import PredictionEntry, label_text
from mlgate.serving.log.writer import PredictionLog
from mlgate.serving.protocol import REQUEST_ID, lone_surrogate_at
from mlgate.serving.request_errors import bad_request, too_large
from mlgate.serving.routing.bandit import ThompsonBandit
from mlgate.serving.telemetry import RoutingMetrics

MAX_ITEMS = 10_000
_ITEM_KEYS = {"request_id", "row_index", "label", "reward", "correction"}
_SHOWN_UNKNOWN = 10


@dataclass(frozen=True)
class FeedbackItem:
    request_id: str
    row_index: int
    label: Any
    reward: float | None
    correction: bool = False

    @property
    def key(self) -> tuple[str, int]:
        return self.request_id, self.row_index

    @property
    def stored(self) -> tuple[str | None, float | None]:
        """(label text, reward) as the feedback table holds them."""
        return (None if self.label is None else label_text(self.label)), self.reward


@dataclass(frozen=True, slots=True)
class LoggedRow:
    """What one variant predicted for one row of a request."""

    variant: str
    model_version: str
    shadow: bool
    prediction: Any


def parse_feedback(body: Any) -> list[FeedbackItem]:
    """The items of a feedback body; a 400 naming the item at fault, 413 beyond MAX_ITEMS."""
    if isinstance(body, dict) and set(body) == {"feedback"}:
        body = body["feedback"]
    items = body if isinstance(body, list) else [body]
    if not items:
        raise bad_request("empty_batch", "the feedback body has no items")
    if len(items) > MAX_ITEMS:
        raise too_large("too_many_items", f"{len(items)} feedback items exceed the limit of {MAX_ITEMS}")
    return [_item(entry, i) for i, entry in enumerate(items)]


def _item(entry: Any, index: int) -> FeedbackItem:
    where = f"feedback item {index}"
    if not isinstance(entry, dict):
        raise bad_request("invalid_feedback", f"{where} must be an object with request_id and label or reward")
    if unknown := sorted(set(entry) - _ITEM_KEYS):
        raise bad_request("invalid_feedback", f"{where}: unknown key(s) {unknown}; allowed: {sorted(_ITEM_KEYS)}")
    request_id, row_index = entry.get("request_id"), entry.get("row_index", 0)
    if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
        raise bad_request("invalid_feedback", f"{where}: request_id must be 1-128 characters of A-Z a-z 0-9 "
                          ". _ : @ / + = - (as X-Request-Id)")
    if isinstance(row_index, bool) or not isinstance(row_index, int) or row_index < 0:
        raise bad_request("invalid_feedback", f"{where}: row_index must be an integer >= 0, not {row_index!r}")
    label, reward = entry.get("label"), entry.get("reward")
    if label is None and reward is None:
        raise bad_request("invalid_feedback", f"{where}: give a label or a reward (or both)")
    if label is not None and not isinstance(label, (str, int, float, bool)):
        raise bad_request("invalid_feedback", f"{where}: label must be a string, number or boolean")
    if reward is not None and (isinstance(reward, bool) or not isinstance(reward, (int, float))
                               or not math.isfinite(reward)):
        raise bad_request("invalid_feedback", f"{where}: reward must be a finite number, not {reward!r}")
    if isinstance(label, str) and lone_surrogate_at(label) is not None:
        raise bad_request("invalid_feedback", f"{where}: label is not valid Unicode (a lone surrogate)")
    correction = entry.get("correction", False)
    if not isinstance(correction, bool):
        raise bad_request("invalid_feedback", f"{where}: correction must be true or false, not {correction!r}")
    return FeedbackItem(request_id, row_index, label, None if reward is None else float(reward), correction)


@dataclass(frozen=True, slots=True)
class _Answer:
    variant: str
    model_version: str
    shadow: bool
    n_rows: int
    predictions: Sequence[Any] | None


class RecentPredictions:
    """What each variant predicted for the last `capacity` requests (written from several threads);
    the labels only, not the features, so memory stays small."""

    def __init__(self, capacity: int = 50_000) -> None:
        self._capacity = capacity
        self._requests: OrderedDict[str, list[_Answer]] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, entry: PredictionEntry) -> None:
        answer = _Answer(entry.variant, entry.model_version, entry.shadow, entry.n_rows, entry.predictions)
        with self._lock:
            self._requests.setdefault(entry.request_id, []).append(answer)
            if len(self._requests) > self._capacity:
                self._requests.popitem(last=False)

    def rows(self, request_id: str, row_index: int) -> list[LoggedRow] | None:
        """The variants' predictions of this row; None when the request is not in memory."""
        with self._lock:
            answers = list(self._requests.get(request_id, ()))
        if not answers:
            return None
        return [LoggedRow(a.variant, a.model_version, a.shadow,
                          a.predictions[row_index] if a.predictions is not None and row_index < len(a.predictions)
                          else None)
                for a in answers if row_index < max(a.n_rows, 1)]


class FeedbackJoin:
    """Joins feedback to predictions and keeps the per-variant online metrics and the bandit current."""

    def __init__(self, metrics: RoutingMetrics, bandit: ThompsonBandit, log: PredictionLog | None,
                 recent: RecentPredictions) -> None:
        self._metrics, self._bandit, self._log, self._recent = metrics, bandit, log, recent
        self._labels: dict[str, int] = defaultdict(int)
        self._correct: dict[str, int] = defaultdict(int)
        self._rewards: dict[str, int] = defaultdict(int)
        self._reward_sum: dict[str, float] = defaultdict(float)
        self._given: OrderedDict[tuple[str, int], tuple[str | None, float | None]] = OrderedDict()

    async def accept(self, items: Sequence[FeedbackItem]) -> dict[str, Any]:
        """Join, record and count `items`; the response body: accepted, duplicates, conflicts,
        corrections, unknown and some unknown ids."""
        logged = await self._logged_rows(items)
        standing = await self._standing(items, logged)
        now, rows, unknown = time.time(), [], []
        outcome = {"accepted": 0, "duplicates": 0, "conflicts": 0, "corrections": 0}
        for item in items:
            found = logged.get(item.key)
            if not found:
                unknown.append(item.request_id)
                continue
            kind = _kind_of(item, standing.get(item.key))
            if kind == "duplicate":
                outcome["duplicates"] += 1
                continue
            rows.append({"request_id": item.request_id, "row_index": item.row_index, "ts": now, "kind": kind,
                         "label": item.stored[0], "reward": item.reward})
            outcome[{"label": "accepted", "conflict": "conflicts", "correction": "corrections"}[kind]] += 1
            if kind == "label":
                standing[item.key] = item.stored
                self._count(item, found)
            elif kind == "correction":
                standing[item.key] = item.stored
        if rows and self._log is not None:
            self._log.record_feedback(rows)
        if unknown:
            self._metrics.feedback_unknown.inc(len(unknown))
        for name in ("duplicates", "conflicts", "corrections"):
            if outcome[name]:
                self._metrics.feedback_outcome.labels(name).inc(outcome[name])
        shown = list(dict.fromkeys(unknown))[:_SHOWN_UNKNOWN]
        return {**outcome, "unknown": len(unknown), "unknown_request_ids": shown}

    async def _standing(self, items: Sequence[FeedbackItem], logged: dict[tuple[str, int], list[LoggedRow]],
                        ) -> dict[tuple[str, int], tuple[str | None, float | None]]:
        """The feedback already standing for the known rows of `items`: from memory, else the log."""
        keys = [item.key for item in items if item.key in logged]
        standing = {key: self._given[key] for key in keys if key in self._given}
        missing = [key for key in keys if key not in standing]
        if missing and self._log is not None:
            standing.update(await asyncio.to_thread(self._log.feedback_of, missing))
        return _Remembered(self._given, standing)

    async def _logged_rows(self, items: Sequence[FeedbackItem]) -> dict[tuple[str, int], list[LoggedRow]]:
        found: dict[tuple[str, int], list[LoggedRow]] = {}
        missing: set[str] = set()
        for item in items:
            rows = self._recent.rows(item.request_id, item.row_index)
            if rows is None:
                missing.add(item.request_id)
            else:
                found[(item.request_id, item.row_index)] = rows
        if missing and self._log is not None:
            for row in await asyncio.to_thread(self._log.lookup, sorted(missing)):
                prediction = None if row["prediction"] is None else orjson.loads(row["prediction"])
                found.setdefault((row["request_id"], row["row_index"]), []).append(
                    LoggedRow(row["variant"], row["model_version"] or "", bool(row["shadow"]), prediction))
        return found

    def _count(self, item: FeedbackItem, rows: list[LoggedRow]) -> None:
        for row in rows:
            if item.label is not None:
                self._count_label(row, label_text(item.label) == label_text(row.prediction))
            if item.reward is not None and not row.shadow:
                self._count_reward(row.variant, item.reward)
        served = next((row for row in rows if not row.shadow), None)
        reward = item.reward
        if reward is None and served is not None and item.label is not None:
            reward = float(label_text(item.label) == label_text(served.prediction))
        if served is not None and reward is not None and 0.0 <= reward <= 1.0:
            arm = self._bandit.update(served.variant, served.model_version, reward)
            self._metrics.bandit_mean.labels(arm.variant, arm.model_version).set(arm.mean)

    def _count_label(self, row: LoggedRow, correct: bool) -> None:
        self._metrics.feedback.labels(row.variant, "label").inc()
        self._labels[row.variant] += 1
        if correct:
            self._metrics.feedback_correct.labels(row.variant).inc()
            self._correct[row.variant] += 1
        self._metrics.online_accuracy.labels(row.variant).set(self._correct[row.variant] / self._labels[row.variant])

    def _count_reward(self, variant: str, reward: float) -> None:
        self._metrics.feedback.labels(variant, "reward").inc()
        self._rewards[variant] += 1
        self._reward_sum[variant] += reward
        self._metrics.reward_sum.labels(variant).set(self._reward_sum[variant])
        self._metrics.online_reward.labels(variant).set(self._reward_sum[variant] / self._rewards[variant])



def _kind_of(item: FeedbackItem, standing: tuple[str | None, float | None] | None) -> str:
    """label (the first), duplicate (the same again), conflict (a different one) or correction."""
    if item.correction:
        return "correction"
    if standing is None:
        return "label"
    return "duplicate" if standing == item.stored else "conflict"


class _Remembered(dict):
    """The standing feedback of one call; what it learns is kept in the bounded memory `given`."""

    def __init__(self, given: OrderedDict, standing: dict, capacity: int = 200_000) -> None:
        super().__init__(standing)
        self._given, self._capacity = given, capacity

    def __setitem__(self, key: tuple[str, int], value: tuple[str | None, float | None]) -> None:
        super().__setitem__(key, value)
        self._given[key] = value
        self._given.move_to_end(key)
        while len(self._given) > self._capacity:
            self._given.popitem(last=False)
