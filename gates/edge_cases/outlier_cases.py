"""Does the outlier detector in the candidate's bundle flag the cases that are outliers by construction?

The edge cases send numbers a whole range-width beyond the training range and categories never seen in
training. A detector shipped with the model (docs/OUTLIERS.md) flags every such row it answers; one that
misses them would tell callers that absurd inputs are ordinary. Judged from the `X-Outlier-Count` header of
the real server's answers: WARN for the missed cases (a weak detector does not make the model wrong), SKIP
when no answer carries the header (the bundle has no detector).
"""

from __future__ import annotations

from collections.abc import Sequence

from mlgate.gates.edge_cases.decide import Answer, Case
from mlgate.gates.result import Check, Status

NAME = "outliers.flagged"
OUTLIER_CASES = (".above_max", ".below_min", ".unseen_category")  # suffixes of the cases outside training
_LISTED = 10


def outlier_check(cases: Sequence[Case], answers: Sequence[Answer]) -> Check:
    """Every answered out-of-training case flagged as an outlier."""
    if not any(answer.outliers is not None for answer in answers):
        return Check(NAME, Status.SKIP, None, "the bundle's detector flags out-of-training cases",
                     "no answer carried X-Outlier-Count: the candidate's bundle has no outlier detector")
    judged = [(case.name, answer.outliers) for case, answer in zip(cases, answers, strict=True)
              if case.name.endswith(OUTLIER_CASES) and answer.status is not None and 200 <= answer.status < 300]
    if not judged:
        return Check(NAME, Status.SKIP, 0, "out-of-training cases answered", "no case outside the training data was "
                     "answered 2xx (no column has a known range or categories)")
    missed = [name for name, flagged in judged if not flagged]
    expected = f"all {len(judged)} cases outside the training data flagged"
    if not missed:
        return Check(NAME, Status.PASS, len(judged), expected,
                     f"the outlier detector flagged all {len(judged)} cases outside the training data")
    shown = ", ".join(missed[:_LISTED]) + (f" and {len(missed) - _LISTED} more" if len(missed) > _LISTED else "")
    return Check(NAME, Status.WARN, len(judged) - len(missed), expected,
                 f"the outlier detector missed {len(missed)} of {len(judged)} cases outside the training data: "
                 f"{shown}", {"missed": missed})
