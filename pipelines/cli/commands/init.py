"""`mlgate init` (set up a repository as an mlgate project) and `mlgate stamp` (dvc.yaml's version stage)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mlgate.gates.result import ExitCode
from mlgate.pipelines import console


def register(sub: argparse._SubParsersAction) -> None:
    init = sub.add_parser(
        "init", help="write params.yaml, dvc.yaml, the data contract and CI workflows for a data file",
        description="Set up the git repository you are in: params.yaml inferred from the data, dvc.yaml, "
                    "expectations/<name>.json and .github/workflows/. A file you changed is never overwritten: "
                    "init shows the difference and exits 1 (--force overwrites).")
    init.add_argument("--data", required=True, metavar="PATH", help="the data file (.csv or .parquet) in the repository")
    init.add_argument("--target", required=True, metavar="COLUMN", help="the column the model predicts")
    init.add_argument("--task", choices=("binary", "multiclass", "regression"),
                      help="default: inferred from the target (2 values: binary; a few or text: multiclass; "
                           "many numbers: regression)")
    init.add_argument("--name", help="registered model name (default: the data file's name)")
    init.add_argument("--force", action="store_true", help="overwrite files you changed since init wrote them")
    init.set_defaults(handler=init_command)
    stamp = sub.add_parser("stamp", help="write the installed mlgate's version and code digest (dvc.yaml's first stage)")
    stamp.add_argument("path", metavar="PATH", help="the stamp file, e.g. .mlgate/version")
    stamp.set_defaults(handler=stamp_command)


def init_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.project.initialise import InitRequest, run_init

    report = run_init(InitRequest(Path(args.data), args.target, args.task, args.name, args.force, Path.cwd()))
    task, columns = report.task, report.columns
    positive = f", positive class {task.positive_class!r}" if task.positive_class is not None else ""
    console.info(f"mlgate init in {report.root}: task {task.task} ({task.reason}){positive}")
    dropped = "; ".join(f"{c} ({r})" for c, r in columns.dropped.items()) or "none"
    console.info(f"  features: {len(columns.numeric)} numeric, {len(columns.categorical)} categorical; "
                 f"left out: {dropped}")
    for note in report.notes:
        console.info(f"  {note}")
    for outcome in report.files:
        console.info(outcome.line())
    for outcome in report.kept:
        console.info(f"\n{outcome.path}: what mlgate init would write instead:")
        for line in outcome.diff:
            console.info(line)
    if report.kept:
        names = ", ".join(f.path for f in report.kept)
        console.error(f"kept {names} (changed since mlgate init wrote them, or not written by it); merge the "
                      "differences above by hand, or re-run with --force to overwrite them")
        return int(ExitCode.GATE_FAILED)
    console.info("next: review and commit these files, then run `dvc repro` (every gate, then the verdict)")
    return int(ExitCode.OK)


def stamp_command(args: argparse.Namespace) -> int:
    from mlgate.pipelines.project.stamp import write_stamp

    path = Path(args.path)
    text, changed = write_stamp(path)
    console.info(f"stamp: {'wrote' if changed else 'unchanged'} {path} ({text.splitlines()[0]})")
    return int(ExitCode.OK)
