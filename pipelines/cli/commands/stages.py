"""`mlgate prepare` and `mlgate train`: the data and training stages of dvc.yaml."""

from __future__ import annotations

import argparse

from mlgate.gates.result import ExitCode
from mlgate.pipelines import console


def register(sub: argparse._SubParsersAction) -> None:
    from mlgate.pipelines.cli.main import add_params_argument, add_tracking_argument

    prepare = sub.add_parser("prepare", help="write seeded, stratified train/test/production splits")
    add_params_argument(prepare)
    prepare.set_defaults(handler=prepare_command)
    train = sub.add_parser("train", help="fit the model (or run train.command), log it to MLflow with lineage, "
                                         "write the model dir")
    add_params_argument(train)
    add_tracking_argument(train)
    train.set_defaults(handler=train_command)


def prepare_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.stages.prepare import run_prepare

    ctx = RunContext.load(args.params)
    paths = run_prepare(ctx.params, ctx.base_dir)
    for name, path in paths.items():
        console.info(f"prepare: wrote {name} split -> {path.relative_to(ctx.base_dir)}")
    return int(ExitCode.OK)


def train_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.context import RunContext
    from mlgate.pipelines.stages.train import run_train

    ctx = RunContext.load(args.params, args.tracking_uri)
    outcome = run_train(ctx.params, ctx.tracking_uri, ctx.base_dir, ctx.params_path)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in sorted(outcome.metrics.items()))
    console.info(f"train: {ctx.params.train.trainer} holdout metrics: {shown}")
    console.info(f"train: MLflow run {outcome.run.run_id} in {ctx.tracking_uri} "
                 f"(experiment '{ctx.params.model.name}', model {outcome.run.model_uri})")
    console.info(f"train: model dir {ctx.params.train.model_dir}, metrics metrics/train.json")
    return int(ExitCode.OK)
