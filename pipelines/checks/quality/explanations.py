"""The quality report's reasons: each feature's mean absolute contribution for the candidate and the
production model side by side, so a reviewer sees a model that changed its reasons.

Both models are explained with the server's explainers (mlgate.serving.explain) on the same holdout
rows: the first `SAMPLE_ROWS` of one seeded shuffle, fewer for the model-agnostic explainer (its model
rows are bounded by `PERMUTATION_MODEL_ROWS`), each against its own bundle's background sample. This is
information, not a rule: the check is PASS, or SKIP when the candidate cannot be explained; a model
that cannot be explained is named with the reason, and the gate never fails for it. Scales can differ
between models (log-odds against probability), so each model's share of its own total is given too.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from mlgate.gates.result import Check, Status, first_line
from mlgate.serving.explain import ExplainOptions, explain_frame, explainer_for
from mlgate.serving.explain_background import background_of_uri, read_background
from mlgate.serving.settings import ExplainConfig

if TYPE_CHECKING:
    from mlgate.pipelines.checks.models import Baseline
    from mlgate.pipelines.context import RunContext
    from mlgate.serving.loading import LoadedModel

CHECK = "explanations"
SAMPLE_ROWS = 200
PERMUTATION_MODEL_ROWS = 150_000
TIME_LIMIT_S = 180.0  # per model; past it that model's reasons are reported as not computed
EXPECTED = "information for the reviewer: never fails the gate"


def quality_reasons(ctx: RunContext, candidate: LoadedModel, baseline: Baseline, test: pd.DataFrame) -> Check:
    """The `explanations` check of the quality gate for its candidate and (usable) baseline."""
    params, ref = ctx.params, baseline.ref
    return reasons_check(candidate.model, candidate.path, baseline.model, ref.uri if ref else None,
                         ref.version if ref else None, test[params.data.features], params.serving.explain,
                         params.model.positive_class, params.train.seed)


def reasons_check(candidate: Any, candidate_dir: Path, baseline: Any, baseline_uri: str | None,
                  baseline_version: str | None, x_test: pd.DataFrame, config: ExplainConfig,
                  positive_class: Any, seed: int) -> Check:
    """The `explanations` check: both models' mean |contribution| per feature on a holdout sample."""
    rows = x_test.sample(frac=1.0, random_state=seed).head(SAMPLE_ROWS)
    found = {"candidate": _reasons(candidate, lambda: read_background(candidate_dir), rows, config,
                                   positive_class, seed)}
    if baseline is not None and baseline_uri is not None:
        found["baseline"] = _reasons(baseline, lambda: background_of_uri(baseline_uri, str(baseline_version)),
                                     rows, config, positive_class, seed)
    details = {**found, "features": list(x_test.columns)}
    cand = found["candidate"]
    if "mean_abs" not in cand:
        return Check(CHECK, Status.SKIP, None, EXPECTED, f"the candidate's reasons could not be computed: "
                     f"{cand['problem']}", details)
    message = "; ".join(f"{who}: {_summary(entry)}" for who, entry in found.items())
    return Check(CHECK, Status.PASS, _top(cand["mean_abs"], 1)[0], EXPECTED,
                 f"mean |contribution| per feature, top first — {message}", details)


def _reasons(model: Any, background: Any, rows: pd.DataFrame, config: ExplainConfig, positive_class: Any,
             seed: int) -> dict[str, Any]:
    """One model's explainer, scale, rows explained and mean |contribution| per feature, or the problem."""
    try:
        sample = background()
        sample = sample.head(config.background_rows) if sample is not None else None
        explainer = explainer_for(model, list(rows.columns), sample is not None)
        if explainer == "permutation":
            per_row = config.permutations * max(1, rows.shape[1] - 1) * (len(sample) if sample is not None else 1)
            rows = rows.head(max(10, PERMUTATION_MODEL_ROWS // per_row))
        options = ExplainOptions(config.permutations, seed, _positive_index(model, positive_class),
                                 time.monotonic() + TIME_LIMIT_S)
        explanation = explain_frame(model, rows, sample, options)
    except Exception as exc:  # noqa: BLE001 - any failure is reported for this model, never fails the gate
        return {"problem": f"{type(exc).__name__}: {first_line(exc)}"}
    means = explanation.mean_abs()
    total = sum(means.values()) or 1.0
    return {"explainer": explanation.explainer, "scale": explanation.scale, "rows": len(rows), **explanation.details,
            "mean_abs": means, "share": {k: v / total for k, v in means.items()}}


def _positive_index(model: Any, positive_class: Any) -> int:
    classes = [str(c) for c in getattr(model, "classes_", [])]
    return classes.index(str(positive_class)) if positive_class is not None and str(positive_class) in classes else 1


def _top(means: dict[str, float], count: int) -> list[str]:
    return sorted(means, key=lambda k: -means[k])[:count]


def _summary(entry: dict[str, Any]) -> str:
    if "mean_abs" not in entry:
        return f"not explained ({entry['problem']})"
    return f"{', '.join(_top(entry['mean_abs'], 3))} ({entry['explainer']}, {entry['scale']}, {entry['rows']} rows)"
