"""The data gate on the real churn data: contract suggestion, contract verdicts, drift, skew, bad input."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from mlgate.gates.config import DataGateConfig
from mlgate.gates.data.contract import ColumnRoles, suggest_suite
from mlgate.gates.data.decide import DataGateInputs, SkewInputs, check, summary_metrics
from mlgate.gates.result import GateResult, Status


@dataclass
class Real:
    train: pd.DataFrame
    production: pd.DataFrame
    numeric: list[str]
    categorical: list[str]
    config: DataGateConfig
    suite: dict
    validator: object


@pytest.fixture(scope="module")
def real(churn_frame, base_params) -> Real:
    """The real 5,000 rows split like `prepare` does, the suite suggested from train, a GX validator."""
    from mlgate.pipelines.checks.data.expectations import Validator
    from mlgate.pipelines.params import Params
    from mlgate.pipelines.stages.prepare import make_splits

    params = Params.model_validate(base_params)
    splits = make_splits(churn_frame, params)
    config = params.gates.data
    roles = ColumnRoles(tuple(params.data.categorical), tuple(params.data.numeric), "churn", ("row_id",))
    suite = suggest_suite(splits["train"], roles, config, "churn")
    return Real(splits["train"], splits["production"], list(params.data.numeric), list(params.data.categorical),
                config, suite, Validator(suite, "suggested suite", config.max_examples))


def judge(real: Real, batch: pd.DataFrame, *, config: DataGateConfig | None = None,
          skew: SkewInputs | None = None, name: str = "production") -> GateResult:
    contract = {} if batch.columns.duplicated().any() else {name: real.validator.validate(batch)}
    inputs = DataGateInputs(real.train, real.numeric, real.categorical, name, {name: batch}, contract, {}, skew)
    return check(inputs, config or real.config).result


def named(result: GateResult, name: str):
    matches = [c for c in result.checks if c.name == name]
    assert matches, f"no check {name}; have {[c.name for c in result.checks][:20]}..."
    return matches[0]


def shifted(real: Real, column: str, sds: float = 1.0) -> pd.DataFrame:
    return real.production.assign(**{column: real.production[column] + sds * real.train[column].std()})


# --- suggestion -------------------------------------------------------------------------------------

def test_suggested_suite_describes_the_training_columns(real):
    rules = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in real.suite["expectations"]}
    assert rules[("expect_table_columns_to_match_ordered_list", None)]["column_list"] == list(real.train.columns)
    assert rules[("expect_table_row_count_to_be_between", None)] == {"min_value": 100}
    assert rules[("expect_column_values_to_be_in_set", "international_plan")]["value_set"] == ["no", "yes"]
    assert len(rules[("expect_column_values_to_be_in_set", "state")]["value_set"]) == real.train["state"].nunique()
    assert rules[("expect_column_values_to_be_of_type", "state")]["type_"] == "str"
    assert "int64" in rules[("expect_column_values_to_be_in_type_list", "total_day_calls")]["type_list"]
    assert ("expect_column_values_to_be_unique", "row_id") in rules
    assert rules[("expect_column_values_to_not_be_null", "row_id")]["mostly"] == 1
    assert rules[("expect_column_values_to_not_be_null", "state")]["mostly"] == pytest.approx(0.95)


def test_suggested_numeric_range_is_widened_by_the_tolerance_and_never_below_zero(real):
    rules = {(e["type"], e["kwargs"].get("column")): e["kwargs"] for e in real.suite["expectations"]}
    minutes = real.train["total_day_minutes"]
    span = minutes.max() - minutes.min()
    between = rules[("expect_column_values_to_be_between", "total_day_minutes")]
    assert between["max_value"] == pytest.approx(minutes.max() + 0.1 * span, abs=1e-6)
    assert between["min_value"] == pytest.approx(max(0.0, minutes.min() - 0.1 * span), abs=1e-6)
    assert between["mostly"] == pytest.approx(0.99)
    calls = rules[("expect_column_values_to_be_between", "number_customer_service_calls")]
    assert calls["min_value"] == 0  # 0 - 10% of the range would be negative; counts never are


# --- the real data: clean passes, corrupted fails ---------------------------------------------------

def test_clean_production_split_passes(real):
    result = judge(real, real.production)
    assert result.status is Status.PASS, [c.message for c in result.by_status(Status.FAIL, Status.ERROR, Status.WARN)]
    assert all(c.status is Status.PASS for c in result.checks if c.name.startswith("contract."))
    assert len([c for c in result.checks if c.name.startswith("drift.") and c.name != "drift.share"]) == 19


def test_corrupted_copy_fails_naming_each_column(real):
    batch = shifted(real, "total_day_minutes").drop(columns=["voice_mail_plan"])
    batch["international_plan"] = batch["international_plan"].replace({"yes": "Yes"})
    result = judge(real, batch)
    assert result.status is Status.FAIL
    assert "missing voice_mail_plan" in named(result, "contract.production.table_columns_to_match_ordered_list").message
    assert named(result, "contract.production.column_to_exist.voice_mail_plan").status is Status.FAIL
    renamed = named(result, "contract.production.column_values_to_be_in_set.international_plan")
    n_yes = int((real.production["international_plan"] == "yes").sum())
    assert renamed.status is Status.FAIL and f"'Yes' ({n_yes} rows)" in renamed.message
    drift = named(result, "drift.total_day_minutes")
    assert drift.status is Status.FAIL and drift.message.startswith("total_day_minutes: PSI ")
    assert "critical feature" in drift.message and "KS D" in drift.message
    assert named(result, "drift.voice_mail_plan").status is Status.FAIL


def test_drift_of_a_non_critical_feature_warns(real):
    result = judge(real, shifted(real, "total_eve_minutes"))
    check_ = named(result, "drift.total_eve_minutes")
    assert check_.status is Status.WARN and check_.message.endswith("— drifted")
    assert check_.details["psi"] >= 0.2 and check_.details["p_value"] < 0.01
    assert named(result, "drift.share").status is Status.PASS


def test_too_many_drifted_features_fail_the_share(real):
    columns = ["total_eve_minutes", "total_eve_charge", "total_night_minutes", "total_night_charge",
               "total_intl_minutes", "total_intl_charge", "account_length"]
    batch = real.production.assign(**{c: real.production[c] + real.train[c].std() for c in columns})
    share = named(judge(real, batch), "drift.share")
    assert share.status is Status.FAIL and share.observed > 0.3
    assert "7 of 19 features drifted" in share.message and "account_length" in share.message


def test_per_feature_threshold_overrides_the_default(real):
    raw = real.config.model_dump()
    raw["drift"]["features"] = {"total_eve_minutes": {"psi": 5.0, "statistic": 0.9}}
    config = DataGateConfig.model_validate(raw)
    assert named(judge(real, shifted(real, "total_eve_minutes"), config=config),
                 "drift.total_eve_minutes").status is Status.PASS


# --- bad input: FAIL or ERROR naming the column, never PASS, never a traceback ----------------------

def _strings_in_numeric(frame):
    return frame.assign(total_day_calls=frame["total_day_calls"].astype(str).where(frame.index % 5 > 0, "n/a"))


def _all_null(frame):
    return frame.assign(total_eve_calls=np.nan)


def _duplicate_columns(frame):
    return pd.concat([frame, frame[["state"]]], axis=1)


def _missing_column(frame):
    return frame.drop(columns=["total_night_calls"])


@pytest.mark.parametrize(("corrupt", "column"), [
    (_strings_in_numeric, "total_day_calls"), (_all_null, "total_eve_calls"),
    (_duplicate_columns, "state"), (_missing_column, "total_night_calls"),
])
def test_bad_batch_fails_naming_the_column(real, corrupt, column):
    result = judge(real, corrupt(real.production))
    assert result.status in (Status.FAIL, Status.ERROR)
    blocking = result.by_status(Status.FAIL, Status.ERROR)
    assert any(column in c.message for c in blocking), [c.message for c in blocking]


def test_batch_with_zero_rows_fails_and_drift_is_not_decided(real):
    result = judge(real, real.production.iloc[:0])
    assert named(result, "contract.production.table_row_count_to_be_between").message == \
        "row count 0, expected [100, inf]"
    assert named(result, "drift").status is Status.ERROR and "no rows" in named(result, "drift").message
    assert result.status is Status.ERROR


def test_an_expectation_gx_cannot_evaluate_is_error(real):
    from mlgate.pipelines.checks.data.expectations import Validator

    suite = {"name": "odd", "expectations": [
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "state", "min_value": 0}}]}
    results = Validator(suite, "odd suite", 5).validate(real.production)
    inputs = DataGateInputs(real.train, real.numeric, real.categorical, "production",
                            {}, {"production": results})
    outcome = check(inputs, real.config).result
    only = named(outcome, "contract.production.column_values_to_be_between.state")
    assert only.status is Status.ERROR and only.message.startswith("state: GX could not evaluate")


def test_examples_are_bounded_by_max_examples(real):
    batch = real.production.assign(state=[f"S{i}" for i in range(len(real.production))])
    renamed = named(judge(real, batch), "contract.production.column_values_to_be_in_set.state")
    assert renamed.status is Status.FAIL
    assert len(renamed.details["examples"]) == real.config.max_examples


def test_nothing_judged_is_error(real):
    inputs = DataGateInputs(real.train, real.numeric, real.categorical, "production")
    assert check(inputs, real.config).result.status is Status.ERROR


# --- skew ------------------------------------------------------------------------------------------

def logged_rows(real: Real, **changes) -> pd.DataFrame:
    rows = real.production.assign(request_id=real.production["row_id"].astype(str))
    return rows.assign(**{k: v(rows[k]) for k, v in changes.items()})


def test_identical_logged_rows_show_no_skew(real):
    result = judge(real, real.production, skew=SkewInputs(logged_rows(real), real.production))
    skew = [c for c in result.checks if c.name.startswith("skew.")]
    assert len(skew) == 1 + 19 and all(c.status is Status.PASS for c in skew)


def test_unit_conversion_is_skew_naming_feature_and_keys(real):
    logged = logged_rows(real, total_day_minutes=lambda s: s * 60)
    result = judge(real, real.production, skew=SkewInputs(logged, real.production))
    minutes = named(result, "skew.total_day_minutes")
    assert minutes.status is Status.FAIL and result.status is Status.FAIL
    nonzero = int((real.production["total_day_minutes"] != 0).sum())
    assert minutes.details["max_rel_diff"] == pytest.approx(59.0)
    assert f"total_day_minutes: {nonzero} of {len(logged)} rows" in minutes.message
    first_key = str(real.production.loc[real.production["total_day_minutes"] != 0, "row_id"].iloc[0])
    assert f"key {first_key}:" in minutes.message
    assert named(result, "skew.total_eve_minutes").status is Status.PASS


def test_logged_keys_with_a_replay_prefix_match_after_removing_it(real):
    logged = logged_rows(real).assign(request_id=lambda f: "run7-" + f["request_id"])
    raw = real.config.model_dump()
    keys = named(judge(real, real.production, skew=SkewInputs(logged, real.production)), "skew.keys")
    assert keys.status is Status.ERROR  # no key matches while the prefix is part of it
    raw["skew"]["key_prefix"] = "run7-"
    config = DataGateConfig.model_validate(raw)
    result = judge(real, real.production, config=config, skew=SkewInputs(logged, real.production))
    assert named(result, "skew.keys").observed == len(logged) and named(result, "skew.state").status is Status.PASS


def test_lower_cased_category_is_skew(real):
    logged = logged_rows(real, state=lambda s: s.str.lower())
    state = named(judge(real, real.production, skew=SkewInputs(logged, real.production)), "skew.state")
    assert state.status is Status.FAIL and state.details["match_rate"] == 0.0
    assert state.details["examples"][0]["logged"] == state.details["examples"][0]["offline"].lower()


def test_unmatched_and_missing_keys(real):
    logged = logged_rows(real)
    logged.loc[logged.index[:3], "request_id"] = ["nope-1", "nope-2", "nope-3"]
    keys = named(judge(real, real.production, skew=SkewInputs(logged, real.production)), "skew.keys")
    assert keys.status is Status.WARN and "nope-1" in keys.message and keys.observed == len(logged) - 3
    no_key = named(judge(real, real.production, skew=SkewInputs(logged.drop(columns=["request_id"]),
                                                                 real.production)), "skew.keys")
    assert no_key.status is Status.ERROR and "'request_id'" in no_key.message


def test_summary_metrics_count_sections(real):
    batch = shifted(real, "total_day_minutes")
    inputs = DataGateInputs(real.train, real.numeric, real.categorical, "production", {"production": batch},
                            {"production": real.validator.validate(batch)})
    metrics = summary_metrics(check(inputs, real.config))
    assert metrics["status"] == "FAIL" and metrics["drift"]["drifted"] >= 1
    assert metrics["sections"]["drift"]["failed"] >= 1 and metrics["drift"]["max_psi"] > 0.2


def test_validator_results_equal_one_plain_gx_pass_on_messy_real_data(real, tmp_path):
    """The two-pass Validator (types on the frame, values with strings as categoricals) reports what
    one GX pass of the whole suite over the frame as given reports, nulls, unseen values and all.
    Frames go through Parquet, as the gate reads them: string columns arrive with pandas' str dtype."""
    import great_expectations as gx

    from mlgate.pipelines.checks.data.expectations import Validator, build_suite

    def as_read(frame: pd.DataFrame) -> pd.DataFrame:
        frame.to_parquet(tmp_path / "frame.parquet", index=False)
        return pd.read_parquet(tmp_path / "frame.parquet")

    production = as_read(real.production)
    assert isinstance(production["state"].dtype, pd.StringDtype)
    rows = np.arange(len(production))
    messy = as_read(production.assign(
        state=production["state"].where(rows % 7 != 0, None),
        area_code=production["area_code"].where(rows % 11 != 0, "area_code_999")))
    messy["total_day_calls"] = messy["total_day_calls"].astype(object).where(rows % 13 != 0, "many")
    context = gx.get_context(mode="ephemeral")
    batches = context.data_sources.add_pandas("plain").add_dataframe_asset("f").add_batch_definition_whole_dataframe("w")
    result_format = {"result_format": "SUMMARY", "partial_unexpected_count": real.config.max_examples,
                     "include_unexpected_rows": False}
    validator = Validator(real.suite, "suggested suite", real.config.max_examples)
    for frame in (production, messy, messy.drop(columns=["total_day_calls"]), production.iloc[:0]):
        plain = batches.get_batch(batch_parameters={"dataframe": frame}).validate(
            build_suite(real.suite, "suggested suite"), result_format=result_format)
        ours = validator.validate(frame)

        def key(r):
            return (r["expectation_config"]["type"], r["expectation_config"]["kwargs"].get("column"))

        expected = {key(r): (r["success"], r["result"]) for r in (x.to_json_dict() for x in plain.results)}
        assert {key(r): (r["success"], r["result"]) for r in ours} == expected
        assert [key(r) for r in ours] == [(e["type"], e["kwargs"].get("column")) for e in real.suite["expectations"]]
