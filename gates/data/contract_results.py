"""One GX expectation result (its JSON dict) -> one Check with observed vs expected, in words."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mlgate.gates.result import Check, Status, first_line

PREFIX = "expect_"


def check_name(split: str, kind: str, column: str | None) -> str:
    """`contract.<split>.<expectation without expect_>[.<column>]`."""
    short = kind.removeprefix(PREFIX)
    return f"contract.{split}.{short}" + (f".{column}" if column is not None else "")


def expectation_check(split: str, result: dict[str, Any], broken: dict[str, str], max_examples: int,
                      frame: pd.DataFrame | None = None) -> Check:
    """Judge one result; `broken` maps columns that are missing or mistyped to the reason. With the
    validated `frame`, example values of a value-set failure carry their true counts."""
    config = result.get("expectation_config") or {}
    kind, kwargs = config.get("type", "unknown"), dict(config.get("kwargs") or {})
    column = kwargs.get("column")
    name, expected = check_name(split, kind, column), expected_text(kind, kwargs)
    raised = exception_message(result)
    if raised is not None:
        if column in broken and kind not in ("expect_column_to_exist",):
            return Check(name, Status.FAIL, None, expected, f"{column}: not evaluated, {broken[column]}")
        where = f"{column}: " if column else ""
        return Check(name, Status.ERROR, None, expected, f"{where}GX could not evaluate {kind}: {raised}")
    body = result.get("result") or {}
    success = bool(result.get("success"))
    if kind == "expect_column_to_exist":
        state = "present" if success else "missing"
        return Check(name, Status.PASS if success else Status.FAIL, state, expected, f"column '{column}' is {state}")
    observed, message, details = describe(kind, kwargs, body, max_examples, frame)
    return Check(name, Status.PASS if success else Status.FAIL, observed, expected, message, details)


def exception_message(result: dict[str, Any]) -> str | None:
    """The first exception GX caught while evaluating, or None. GX nests them per metric at times."""
    info = result.get("exception_info") or {}
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            return first_line(str(entry.get("exception_message") or "unknown error"))
    return None


def expected_text(kind: str, kwargs: dict[str, Any]) -> str:
    """The rule, in words."""
    mostly = kwargs.get("mostly")
    share = f" for at least {mostly:.1%} of rows" if mostly is not None and mostly < 1 else ""
    if kind == "expect_column_to_exist":
        return "column present"
    if kind == "expect_column_values_to_be_of_type":
        return f"type {kwargs.get('type_')}"
    if kind == "expect_column_values_to_be_in_type_list":
        return "type in " + "|".join(map(str, kwargs.get("type_list") or []))
    if kind == "expect_column_values_to_not_be_null":
        return f"null share <= {1 - (mostly if mostly is not None else 1.0):.1%}"
    if kind == "expect_column_values_to_be_in_set":
        return f"values in the {len(kwargs.get('value_set') or [])} known values{share}"
    if kind in ("expect_column_values_to_be_between", "expect_table_row_count_to_be_between"):
        what = "row count" if "row_count" in kind else "values"
        return f"{what} in {_interval(kwargs)}{share}"
    if kind == "expect_table_columns_to_match_ordered_list":
        columns = list(kwargs.get("column_list") or [])
        return f"{len(columns)} columns in order: " + ", ".join(map(str, columns))
    if kind == "expect_column_values_to_be_unique":
        return f"unique values{share}"
    return ", ".join(f"{k}={v}" for k, v in sorted(kwargs.items()) if k != "column")


def describe(kind: str, kwargs: dict[str, Any], body: dict[str, Any], max_examples: int,
             frame: pd.DataFrame | None = None) -> tuple[Any, str, dict[str, Any]]:
    """(observed, message, details) for a result GX evaluated."""
    column = kwargs.get("column")
    if kind == "expect_table_columns_to_match_ordered_list":
        return _describe_columns(list(kwargs.get("column_list") or []), body.get("observed_value"))
    if "unexpected_count" in body:
        return _describe_unexpected(kind, kwargs, body, max_examples, frame)
    observed = body.get("observed_value")
    if kind == "expect_table_row_count_to_be_between":
        return observed, f"row count {observed}, expected {_interval(kwargs)}", {}
    if kind in ("expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"):
        return observed, f"{column}: type {observed}, expected {expected_text(kind, kwargs)}", {}
    prefix = f"{column}: " if column else ""
    return observed, f"{prefix}observed {observed}; expected {expected_text(kind, kwargs)}", {}


def _describe_columns(expected: list[Any], observed: Any) -> tuple[Any, str, dict[str, Any]]:
    observed = list(observed or [])
    missing = [c for c in expected if c not in observed]
    extra = [c for c in observed if c not in expected]
    common = [c for c in observed if c in expected]
    moved = [c for c, e in zip(common, [c for c in expected if c in observed], strict=False) if c != e]
    parts = [f"missing {', '.join(map(str, missing))}" if missing else "",
             f"unexpected {', '.join(map(str, extra))}" if extra else "",
             f"out of order: {', '.join(map(str, moved))}" if moved else ""]
    text = "; ".join(p for p in parts if p) or f"all {len(expected)} columns present in order"
    return observed, f"columns: {text}", {"missing": missing, "unexpected": extra, "out_of_order": moved}


def _describe_unexpected(kind: str, kwargs: dict[str, Any], body: dict[str, Any], max_examples: int,
                         frame: pd.DataFrame | None) -> tuple[Any, str, dict[str, Any]]:
    """Row-level expectations: how many rows broke the rule, and a bounded list of example values."""
    column = kwargs.get("column")
    count, total = int(body.get("unexpected_count") or 0), int(body.get("element_count") or 0)
    share = count / total if total else 0.0
    examples = _examples(kind, kwargs, body, max_examples, frame)
    rows = list(body.get("partial_unexpected_index_list") or [])[:max_examples]
    details = {"unexpected_count": count, "element_count": total, "examples": examples, "example_rows": rows}
    what = {"expect_column_values_to_not_be_null": "are null",
            "expect_column_values_to_be_in_set": "are not in the known values",
            "expect_column_values_to_be_between": f"are outside {_interval(kwargs)}",
            "expect_column_values_to_be_unique": "are duplicates"}.get(kind, f"break {kind}")
    message = f"{column}: {count} of {total} values ({share:.1%}) {what}"
    if count and kind == "expect_column_values_to_not_be_null":
        message += f" (allowed {expected_text(kind, kwargs).split('<= ')[-1]}); e.g. rows {_list(rows)}"
    elif count and examples:
        message += "; e.g. " + ", ".join(
            f"{e['value']!r}" + (f" ({e['count']} rows)" if e.get("count") is not None else "") for e in examples)
    return round(share, 6), message, details


def _examples(kind: str, kwargs: dict[str, Any], body: dict[str, Any], max_examples: int,
              frame: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Distinct example values; exact counts for a value-set failure when the frame is at hand.
    (GX's partial counts only count within its first few unexpected rows, which reads as wrong.)"""
    column = kwargs.get("column")
    if kind == "expect_column_values_to_be_in_set" and frame is not None and column in frame.columns:
        values = frame[column]
        outside = values[values.notna() & ~values.isin(list(kwargs.get("value_set") or []))]
        counts = outside.value_counts().head(max_examples)
        return [{"value": _plain(v), "count": int(n)} for v, n in counts.items()]
    seen: list[Any] = []
    for value in body.get("partial_unexpected_list") or []:
        if value not in seen:
            seen.append(value)
    return [{"value": v, "count": None} for v in seen[:max_examples]]


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _interval(kwargs: dict[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    return f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"


def _list(values: list[Any]) -> str:
    return ", ".join(map(str, values)) if values else "n/a"
