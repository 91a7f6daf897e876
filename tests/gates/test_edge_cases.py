"""Edge-case generation from a real churn schema, the judge of each answer, and online/offline consistency."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from mlgate.gates.config import EdgeCasesConfig
from mlgate.gates.edge_cases.consistency import ServerPredictions, consistency_checks
from mlgate.gates.edge_cases.data_schema import schema_from_frame
from mlgate.gates.edge_cases.decide import Answer, Case, HttpRequest, assemble, health_check, judge
from mlgate.gates.edge_cases.generation import LONG_STRING, ServerLimits, generate_cases
from mlgate.gates.edge_cases.property_rows import property_rows
from mlgate.gates.result import Status

CATEGORICAL = ["state", "area_code", "international_plan", "voice_mail_plan"]
INTEGER = "number_customer_service_calls"  # declared `long` to cover integer columns
NUMERIC_CASES = {"null", "nan", "pos_inf", "neg_inf", "below_min", "above_max", "zero", "empty_string",
                 "long_string", "non_ascii", "wrong_type"}
STRING_CASES = {"null", "nan", "pos_inf", "neg_inf", "unseen_category", "empty_string", "long_string",
                "non_ascii", "wrong_type"}
LIMITS = ServerLimits(max_batch_rows=50, max_body_bytes=200_000)


@pytest.fixture(scope="module")
def train(churn_frame: pd.DataFrame) -> pd.DataFrame:
    return churn_frame.iloc[:600].reset_index(drop=True)


@pytest.fixture(scope="module")
def signature(train: pd.DataFrame) -> list[dict]:
    def kind(column: str) -> str:
        return "string" if column in CATEGORICAL else "long" if column == INTEGER else "double"

    return [{"name": c, "type": kind(c), "required": True} for c in train.columns if c != "churn"]


@pytest.fixture(scope="module")
def schema(train, signature):
    return schema_from_frame(train, signature, np.array(["no", "yes"], dtype=object))


@pytest.fixture(scope="module")
def cases(schema) -> dict[str, Case]:
    generated = generate_cases(schema, LIMITS, EdgeCasesConfig(property_rows=12, seed=3))
    return {case.name: case for case in generated}


def _sent(case: Case) -> dict:
    split = json.loads(case.request.body)["dataframe_split"]
    return dict(zip(split["columns"], split["data"][0], strict=False)) if split["data"] else {}


def test_schema_takes_types_from_the_signature_and_ranges_from_the_data(schema, train):
    specs = {spec.name: spec for spec in schema.features}
    assert specs["total_day_minutes"].minimum == train["total_day_minutes"].min()
    assert specs["total_day_minutes"].maximum == train["total_day_minutes"].max()
    assert set(specs["state"].categories) == set(train["state"].astype(str))
    assert specs[INTEGER].integer and isinstance(schema.base_row[INTEGER], int)
    assert schema.classes == ("no", "yes") and all(type(c) is str for c in schema.classes)
    assert schema.base_row == {n: train.iloc[0][n].item() if hasattr(train.iloc[0][n], "item")
                               else train.iloc[0][n] for n in schema.names}


def test_schema_refuses_a_signature_column_the_data_lacks(train, signature):
    with pytest.raises(ValueError, match="'total_fax_minutes' is not in the training data"):
        schema_from_frame(train, [*signature, {"name": "total_fax_minutes", "type": "double"}], None)
    with pytest.raises(ValueError, match="no input signature"):
        schema_from_frame(train, [], None)


def test_every_feature_gets_the_cases_of_its_kind(cases, schema):
    for spec in schema.features:
        made = {name.split(".")[-1] for name in cases if name.startswith(f"feature.{spec.name}.")}
        assert made == (STRING_CASES if spec.name in CATEGORICAL else NUMERIC_CASES), spec.name


@pytest.mark.parametrize("column, suffix, expect", [
    ("total_day_minutes", "null", "ok"), ("total_day_minutes", "nan", "ok"),
    ("total_day_minutes", "pos_inf", "client_error"), ("total_day_minutes", "neg_inf", "client_error"),
    ("total_day_minutes", "below_min", "ok"), ("total_day_minutes", "above_max", "ok"),
    ("total_day_minutes", "zero", "ok"), ("total_day_minutes", "empty_string", "client_error"),
    ("total_day_minutes", "wrong_type", "client_error"), ("state", "unseen_category", "ok"),
    ("state", "empty_string", "ok"), ("state", "long_string", "ok"), ("state", "non_ascii", "ok"),
    ("state", "pos_inf", "client_error"), ("state", "wrong_type", "client_error"),
])
def test_feature_cases_expect_the_contracted_class_and_name_the_column(cases, column, suffix, expect):
    case = cases[f"feature.{column}.{suffix}"]
    assert case.expect == expect and case.rows == 1
    assert case.column == (column if expect == "client_error" else None)


def test_feature_case_bodies_carry_the_value_they_describe(cases, schema):
    spec = next(s for s in schema.features if s.name == "total_day_minutes")
    assert _sent(cases["feature.total_day_minutes.below_min"])["total_day_minutes"] < spec.minimum
    assert _sent(cases["feature.total_day_minutes.above_max"])["total_day_minutes"] > spec.maximum
    assert math.isnan(_sent(cases["feature.total_day_minutes.nan"])["total_day_minutes"])
    assert _sent(cases["feature.total_day_minutes.pos_inf"])["total_day_minutes"] == math.inf
    assert _sent(cases["feature.state.long_string"])["state"] == LONG_STRING and len(LONG_STRING) == 10_000
    assert not _sent(cases["feature.state.non_ascii"])["state"].isascii()
    state = next(s for s in schema.features if s.name == "state")
    assert _sent(cases["feature.state.unseen_category"])["state"] not in state.categories
    assert _sent(cases["feature.total_day_minutes.wrong_type"])["total_day_minutes"] is True
    assert type(_sent(cases[f"feature.{INTEGER}.above_max"])[INTEGER]) is int
    untouched = {k: v for k, v in _sent(cases["feature.state.null"]).items() if k != "state"}
    assert untouched == {k: v for k, v in schema.base_row.items() if k != "state"}


def test_request_cases_cover_batch_sizes_and_malformed_requests(cases, schema):
    rows = {name: len(json.loads(cases[name].request.body)["dataframe_split"]["data"])
            for name in ("request.empty_batch", "request.one_row", "request.max_batch_rows", "request.too_many_rows")}
    assert rows == {"request.empty_batch": 0, "request.one_row": 1, "request.max_batch_rows": 50,
                    "request.too_many_rows": 51}
    assert cases["request.max_batch_rows"].expect == "ok" and cases["request.max_batch_rows"].rows == 50
    assert cases["request.too_many_rows"].status == 413 and cases["request.empty_batch"].expect == "client_error"
    columns = {name: json.loads(cases[name].request.body)["dataframe_split"]["columns"]
               for name in ("request.missing_column", "request.extra_column", "request.shuffled_columns",
                            "request.duplicate_column")}
    first = schema.names[0]
    assert first not in columns["request.missing_column"] and cases["request.missing_column"].column == first
    assert columns["request.duplicate_column"].count(first) == 2
    assert sorted(columns["request.shuffled_columns"]) == sorted(schema.names) != columns["request.shuffled_columns"]
    assert cases["request.extra_column"].expect == "ok" and len(columns["request.extra_column"]) == len(schema.names) + 1
    with pytest.raises(ValueError):
        json.loads(cases["request.malformed_json"].request.body)
    assert cases["request.wrong_content_type"].request.content_type == "text/plain"
    assert cases["request.wrong_content_type"].status == 415
    oversized = cases["request.body_too_large"]
    assert len(oversized.request.body) == LIMITS.max_body_bytes + 1 and oversized.status == 413
    assert json.loads(oversized.request.body)  # padded with whitespace: still valid JSON
    for name in ("request.format_dataframe_records", "request.format_instances", "request.format_inputs",
                 "request.csv", "request.proba"):
        assert cases[name].expect == "ok", name
    assert cases["request.proba"].output == "proba" and cases["request.proba"].request.query == "proba=true"


def test_extra_columns_rejected_by_config_expect_a_400_naming_it(schema):
    reject = ServerLimits(50, 200_000, extra_columns="reject")
    case = next(c for c in generate_cases(schema, reject, EdgeCasesConfig(property_rows=0)) if c.name == "request.extra_column")
    assert case.expect == "client_error" and case.column == "mlgate_extra_column"


def test_a_full_batch_over_the_body_limit_expects_413(schema):
    tight = ServerLimits(max_batch_rows=5000, max_body_bytes=100_000)
    made = {c.name: c for c in generate_cases(schema, tight, EdgeCasesConfig(property_rows=0))}
    assert made["request.max_batch_rows"].expect == "client_error" and made["request.max_batch_rows"].status == 413


def test_property_rows_are_seeded_bounded_and_in_the_valid_domain(schema):
    rows = property_rows(schema, 40, seed=5)
    assert rows == property_rows(schema, 40, seed=5)
    assert rows != property_rows(schema, 40, seed=6)
    assert len(rows) == 40 and property_rows(schema, 0, seed=5) == []
    assert property_rows(schema, 60, seed=5)[:40] == rows, "a larger count extends, never reshuffles"
    specs = {spec.name: spec for spec in schema.features}
    for row in rows:
        assert list(row) == schema.names
        for name, value in row.items():
            spec = specs[name]
            if value is None:
                continue
            if spec.kind == "string":
                assert value in spec.categories
            else:
                width = max(spec.maximum - spec.minimum, 1.0)
                assert spec.minimum - width <= value <= spec.maximum + width and math.isfinite(value)
                assert isinstance(value, int) if spec.integer else isinstance(value, float)
    assert any(v is None for row in rows for v in row.values()), "nulls are part of the valid domain"
    minutes = [row["total_day_minutes"] for row in rows]
    spec = specs["total_day_minutes"]
    assert {spec.minimum, spec.maximum} & set(minutes), "boundary values are mixed in"
    assert len(set(minutes)) > 10, "ordinary values vary"


def test_property_cases_ask_for_probabilities(cases):
    made = [c for name, c in cases.items() if name.startswith("property.")]
    assert len(made) == 12 and {c.output for c in made} == {"proba"} and {c.expect for c in made} == {"ok"}


def _body(payload: dict) -> bytes:
    return json.dumps(payload).encode()


OK_CASE = Case("request.two_rows", HttpRequest(b"{}"), "ok", "two valid rows", rows=2, classes=("no", "yes"))
PROBA_CASE = Case("request.proba", HttpRequest(b"{}"), "ok", "proba", output="proba", classes=("no", "yes"))
BAD_CASE = Case("feature.state.pos_inf", HttpRequest(b"{}"), "client_error", "inf", column="state",
                classes=("no", "yes"))
BIG_CASE = Case("request.too_many_rows", HttpRequest(b"{}"), "client_error", "too many", status=413)


@pytest.mark.parametrize("case, answer, passes, words", [
    (OK_CASE, Answer(200, _body({"predictions": ["no", "yes"]})), True, "200 as expected"),
    (OK_CASE, Answer(500, _body({"error": {"code": "prediction_failed", "message": "Input X contains NaN"}})),
     False, "server error 500: prediction_failed: Input X contains NaN"),
    (OK_CASE, Answer(None, problem="no answer within 10 s"), False, "no answer from the server (no answer within"),
    (OK_CASE, Answer(400, _body({"error": {"code": "wrong_type", "message": "m"}})), False, "valid request was refused"),
    (OK_CASE, Answer(200, _body({"predictions": ["no"]})), False, "1 predictions for 2 rows"),
    (OK_CASE, Answer(200, _body({"predictions": ["no", "maybe"]})), False, "row 1: 'maybe' is not one of"),
    (OK_CASE, Answer(200, b"not json"), False, "no 'predictions' list"),
    (PROBA_CASE, Answer(200, _body({"predictions": [[0.25, 0.75]]})), True, ""),
    (PROBA_CASE, Answer(200, _body({"predictions": [[0.25, 0.8]]})), False, "does not sum to 1"),
    (PROBA_CASE, Answer(200, _body({"predictions": [[None, 1.0]]})), False, "outside [0, 1] or not finite"),
    (BAD_CASE, Answer(400, _body({"error": {"code": "non_finite", "message": "bad", "column": "state"}})), True, ""),
    (BAD_CASE, Answer(400, _body({"error": {"code": "x", "message": "column 'state' is bad"}})), True, ""),
    (BAD_CASE, Answer(400, _body({"error": {"code": "x", "message": "bad", "column": "area_code"}})), False,
     "does not name column 'state'"),
    (BAD_CASE, Answer(400, _body({"detail": "bad"})), False, "no error message"),
    (BAD_CASE, Answer(200, _body({"predictions": ["no"]})), False, "invalid request got 200 instead of a 4xx"),
    (BAD_CASE, Answer(502, b"bad gateway"), False, "server error 502: bad gateway"),
    (BIG_CASE, Answer(413, _body({"error": {"code": "too_many_rows", "message": "m"}})), True, ""),
    (BIG_CASE, Answer(400, _body({"error": {"code": "too_many_rows", "message": "m"}})), False, "the contract says 413"),
])
def test_judge_passes_only_the_expected_well_formed_answer(case, answer, passes, words):
    check = judge(case, answer)
    assert check.status is (Status.PASS if passes else Status.FAIL), check.message
    assert check.name == f"case.{case.name}" and check.message.startswith(case.name) and words in check.message
    assert check.details["expected"]["class"] == case.expect and check.details["status"] == answer.status


def test_assembled_result_names_the_failing_cases_first():
    passed = judge(OK_CASE, Answer(200, _body({"predictions": ["no", "yes"]})))
    failed = judge(BAD_CASE, Answer(500, _body({"error": {"code": "prediction_failed", "message": "boom"}})))
    result = assemble([passed, failed], [health_check(Answer(200, b"{}"), alive=True)], 1.0)
    assert result.status is Status.FAIL and result.checks[0].name == "cases"
    assert result.checks[0].message == "1 of 2 cases failed: feature.state.pos_inf"
    assert result.checks[0].details["server_errors_or_no_answer"] == ["feature.state.pos_inf"]
    assert assemble([], [], 0.0).status is Status.ERROR
    assert assemble([passed], [], 0.0).status is Status.PASS


def test_a_dead_or_unhealthy_server_fails_the_health_check():
    assert health_check(Answer(200, b"{}"), alive=True).status is Status.PASS
    dead = health_check(Answer(None, problem="ConnectError: refused"), alive=False)
    assert dead.status is Status.FAIL and "dead" in dead.message and "refused" in dead.message
    assert health_check(Answer(503, b"{}"), alive=True).status is Status.FAIL


def test_consistency_passes_equal_predictions_and_names_differing_rows():
    offline_labels, offline_proba = ["no", "yes", "no"], np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]])
    same = ServerPredictions(["no", "yes", "no"], offline_proba.tolist())
    assert [c.status for c in consistency_checks(same, offline_labels, offline_proba, 1e-9)] == [Status.PASS] * 2
    drifted = ServerPredictions(["no", "no", "no"], (offline_proba + [[0, 0], [0, 0], [1e-6, -1e-6]]).tolist())
    labels, proba = consistency_checks(drifted, offline_labels, offline_proba, 1e-9, row_ids=[10, 11, 12])
    assert labels.status is Status.FAIL and "1 of 3" in labels.message and "[11]" in labels.message
    assert proba.status is Status.FAIL and proba.details["rows_over_tolerance"] == [12]
    assert consistency_checks(drifted, offline_labels, offline_proba, 1e-3)[1].status is Status.PASS


def test_consistency_without_server_answers_fails_and_without_proba_skips():
    gone = ServerPredictions(None, None, "holdout rows 0-999 (labels): status 500")
    labels, proba = consistency_checks(gone, ["no"], np.array([[0.5, 0.5]]), 1e-9)
    assert labels.status is Status.FAIL and "status 500" in labels.message and proba.status is Status.FAIL
    regression = consistency_checks(ServerPredictions([1.5]), [1.5], None, 1e-9)
    assert [c.status for c in regression] == [Status.PASS, Status.SKIP]
    nan = consistency_checks(ServerPredictions(["no"], [[float("nan"), 0.5]]), ["no"], np.array([[0.5, 0.5]]), 1.0)
    assert nan[1].status is Status.FAIL
    short = consistency_checks(ServerPredictions(["no"], [[0.5, 0.5]]), ["no", "yes"], np.array([[0.5, 0.5]] * 2), 1e-9)
    assert short[0].status is Status.FAIL and "1 labels for 2" in short[0].message


def test_a_regressor_gets_number_predictions_and_no_probability_cases(train, signature):
    schema = schema_from_frame(train, signature, None)
    made = {c.name: c for c in generate_cases(schema, LIMITS, EdgeCasesConfig(property_rows=3))}
    assert "request.proba" not in made and {made[f"property.row_00{i}"].output for i in range(3)} == {"labels"}
    one_row = made["request.one_row"]
    assert judge(one_row, Answer(200, _body({"predictions": [0.37]}))).status is Status.PASS
    assert judge(one_row, Answer(200, _body({"predictions": ["0.37"]}))).status is Status.FAIL


def test_a_number_coded_category_gets_an_unseen_category_case(train, signature):
    """A 0/1 flag declared categorical is served as a number, and still tested with a code training never had."""
    frame = train.assign(flag=(train["total_day_minutes"] > 180).astype("int64"))
    columns = [*signature, {"name": "flag", "type": "double", "required": True}]
    schema = schema_from_frame(frame, columns, np.array(["no", "yes"], dtype=object), categorical=["flag"])
    spec = next(s for s in schema.features if s.name == "flag")
    assert spec.categorical and spec.categories == (0.0, 1.0)
    cases = {c.name: c for c in generate_cases(schema, LIMITS, EdgeCasesConfig(property_rows=0))}
    unseen = cases["feature.flag.unseen_category"]
    assert unseen.expect == "ok" and unseen.sent == {"column": "flag", "value": 2.0}
    plain = schema_from_frame(frame, columns, np.array(["no", "yes"], dtype=object))
    assert "feature.flag.unseen_category" not in {c.name for c in generate_cases(plain, LIMITS, EdgeCasesConfig(
        property_rows=0))}
