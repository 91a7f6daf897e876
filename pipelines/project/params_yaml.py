"""params.yaml as text with comments: a fixed comment per section, and the proposal's notes per value.

PyYAML drops comments, so this writes the block structure itself and lets PyYAML format each leaf
(quoting `"yes"`, `null`, numbers). Small mappings and lists of scalars stay on one line.
"""

from __future__ import annotations

from typing import Any

import yaml

HEADER = (
    "# mlgate configuration, written by `mlgate init` from {source} (target '{target}').",
    "# Every stage reads it, after validating it: `mlgate config validate`. Curate it in pull requests:",
    "# re-running `mlgate init` never overwrites a file you changed (it shows the difference instead).",
)
# Comment lines above a key, by dotted path.
COMMENTS: dict[str, tuple[str, ...]] = {
    "model": ("What is predicted. The name is the MLflow registered model and the suite's file name.",),
    "data": ("The data set and its split into train / test / production (seeded, stratified for classes).",
             "`production` plays a new batch: the data gate checks it against the contract and for drift."),
    "data.drop_columns": ("Columns that are not features (see each reason); remove one here and list it",
                          "under categorical or numeric to use it."),
    "train": ("The candidate model: an sklearn pipeline (imputation, one-hot encoding, the estimator). For your",
              "own training code, replace estimator with `command: python train.py` and `deps: [train.py]`",
              "(mlgate's README: \"Your own training code\"; then re-run `mlgate init` for dvc.yaml)."),
    "gates": ("The pre-deploy gates that `dvc repro` runs; the verdict stage fails on any FAIL or ERROR.",),
    "gates.data": ("The data contract (suite, reviewed in PRs; re-derive with `mlgate gate data --suggest`),",
                   "and drift of the production batch against training (PSI + KS / chi-square)."),
    "gates.quality": ("Candidate vs the production model (alias champion) on the test split. Floors are the",
                      "no-skill model's value: raise them to your team's bar. max_regression is the allowed",
                      "worsening vs production, decided on the confidence interval of the paired difference.",
                      "Without a production model yet, relative checks are SKIP (require_baseline: true: ERROR)."),
    "gates.quality.slices": ("The same comparison per slice (each value; quantile bins of numeric columns),",
                             "Holm-corrected; a slice too small to decide warns."),
    "gates.quality.max_gap": ("Allowed train - test difference per metric (overfitting); generous until you",
                              "know your model's usual gap."),
    "gates.quality.deepchecks": ("deepchecks suites, run in their own pinned environment (built once, cached",
                                 "in ~/.cache/mlgate); checks that do not apply to the task are SKIP."),
    "gates.edge_cases": ("The real server on 127.0.0.1 hit with generated bad inputs: never a 5xx, and server",
                         "predictions equal offline ones on the test split."),
    "gates.latency": ("Candidate and production servers under the same locust load, in alternating rounds",
                      "(about 20 s per model): SLOs, the p95 ratio to production and a rank test."),
    "rollout": ("`mlgate rollout`: shadow, then canary steps with sequential tests between them.",),
    "serving": ("The model server (`mlgate serve`).",),
    "approvals": ("Who may approve a model (`mlgate approve`); add CODEOWNERS with `codeowners: PATH`.",),
}
FLOW_WIDTH = 100  # a mapping or list longer than this on one line becomes a block
COMMENT_COLUMN = 40


def params_text(params: dict[str, Any], notes: dict[str, str], source: str, target: str) -> str:
    """The whole file: header, then each section with its comments."""
    lines = [line.format(source=source, target=target) for line in HEADER]
    for key, value in params.items():
        lines.append("")
        lines += _entry(key, value, key, 0, notes)
    return "\n".join(lines) + "\n"


def _entry(key: Any, value: Any, path: str, indent: int, notes: dict[str, str]) -> list[str]:
    pad = " " * indent
    lines = [f"{pad}# {text}" for text in COMMENTS.get(path, ())]
    head = f"{pad}{_flow(key)}:"
    note = notes.get(path)
    if isinstance(value, dict) and value and (_has_notes(path, notes) or not _fits(head, value)):
        lines.append(_with_note(head, note))
        for child_key, child in value.items():
            lines += _entry(child_key, child, f"{path}.{child_key}", indent + 2, notes)
    elif isinstance(value, list) and value and (_has_notes(path, notes) or not _fits(head, value)):
        lines.append(_with_note(head, note))
        for item in value:
            lines.append(_with_note(f"{pad}  - {_flow(item)}", notes.get(f"{path}.{item}")))
    else:
        lines.append(_with_note(f"{head} {_flow(value)}", note))
    return lines


def _has_notes(path: str, notes: dict[str, str]) -> bool:
    return any(key.startswith(path + ".") for key in notes)


def _fits(head: str, value: Any) -> bool:
    return len(head) + 1 + len(_flow(value)) <= FLOW_WIDTH


def _with_note(line: str, note: str | None) -> str:
    if not note:
        return line
    return f"{line.ljust(max(COMMENT_COLUMN, len(line) + 2))}# {note}"


def _flow(value: Any) -> str:
    """One YAML flow node: `'yes'`, `null`, `[a, b]`, `{1: 0.9, 20: 0.1}`."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
