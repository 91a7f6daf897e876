"""The GitHub workflows: valid against the bundled schema, and every `run:` step calls only what the
tests run here (make, mlgate, dvc, gh, plus echo/cat/test/jq plumbing), with arguments mlgate accepts."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mlgate.pipelines.cli.main import build_parser
from mlgate.pipelines.report.markdown import REPORT_MARKER

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
# The first word of every command a workflow runs. Tools: what developers run. Plumbing: moving a
# value into $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY, a precondition, picking a field from JSON.
TOOLS = frozenset({"make", "mlgate", "dvc", "gh"})
PLUMBING = frozenset({"echo", "cat", "test", "jq"})
ALLOWED = TOOLS | PLUMBING
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "\n", "(", ")", "|&", ";;"})
SUBSTITUTION = "__substitution__"
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# Subcommands that a later issue adds (DESIGN §8); until they exist their arguments cannot be checked.
PENDING_SUBCOMMANDS = frozenset({"rollout"})


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def run_steps(workflow: dict) -> list[tuple[str, str]]:
    """(job/step label, script) of every step with a `run:`."""
    return [(f"{job_id}/{step.get('name') or step['run'][:40]}", step["run"])
            for job_id, job in workflow["jobs"].items() for step in job.get("steps", []) if "run" in step]


def shell_commands(script: str) -> list[list[str]]:
    """Every simple command of a script as a word list, including those inside $(...) substitutions."""
    if "`" in script:
        raise ValueError("backtick substitution: use $(...)")
    flat, substitutions = _extract_substitutions(script.replace("\\\n", " "))
    commands = _split_commands(flat)
    for inner in substitutions:
        commands += shell_commands(inner)
    return commands


def _extract_substitutions(text: str) -> tuple[str, list[str]]:
    out, found, quote, i = [], [], None, 0
    while i < len(text):
        char = text[i]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            out.append(text[i:i + 2])
            i += 2
            continue
        elif text.startswith("$(", i):
            end = _closing_paren(text, i + 2)
            found.append(text[i + 2:end])
            out.append(SUBSTITUTION)
            i = end + 1
            continue
        elif char in "'\"":
            quote = None if quote == char else (char if quote is None else quote)
        out.append(char)
        i += 1
    return "".join(out), found


def _closing_paren(text: str, i: int) -> int:
    depth, quote = 1, None
    while i < len(text):
        char = text[i]
        if quote == "'":
            quote = None if char == "'" else quote
        elif char == "\\":
            i += 1
        elif text.startswith("$(", i):
            i = _closing_paren(text, i + 2)
        elif quote == '"':
            quote = None if char == '"' else quote
        elif char in "'\"":
            quote = char
        elif char in "()":
            depth += 1 if char == "(" else -1
            if depth == 0:
                return i
        i += 1
    raise ValueError(f"unbalanced $( in: {text!r}")


def _split_commands(text: str) -> list[list[str]]:
    lexer = shlex.shlex(_newlines_as_separators(text), posix=True, punctuation_chars="();<>|&")
    lexer.commenters = ""  # `#` starts a comment only at a word start in sh; comment lines are gone
    commands, current = [], []
    for token in lexer:
        if token in SEPARATORS:
            commands, current = ([*commands, current] if current else commands), []
        else:
            current.append(token)
    return [*commands, current] if current else commands


def _newlines_as_separators(text: str) -> str:
    """Drop comment lines; a newline outside quotes ends a command like `;` does."""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    out, quote = [], None
    for char in text:
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        out.append(";" if char == "\n" and quote is None else char)
    return "".join(out)


def first_word(command: list[str]) -> str:
    words = [w for w in command if not ASSIGNMENT.match(w)]
    return words[0] if words else ""


def disallowed(script: str) -> list[str]:
    return [first_word(c) for c in shell_commands(script) if first_word(c) not in ALLOWED]


@pytest.mark.parametrize("script", [
    "python -m pytest", "pip install mlgate", "FOO=1 python train.py", "make test && ./deploy.sh",
    "echo ok | sh", 'echo "id=$(curl -s http://example.com)"', "make test\nbash -c 'mlgate verdict'",
    'echo "$(gh api x | jq -r .a) $(gh api y | tee out)"', "echo 'multi\nline' ; rm -rf /",
])
def test_the_allow_list_rejects_other_programs(script):
    assert disallowed(script)


def test_backtick_substitution_is_refused():
    with pytest.raises(ValueError, match="backtick"):
        disallowed("echo `whoami`")


@pytest.mark.parametrize("script", [
    "make test", 'cat reports/report.md >> "$GITHUB_STEP_SUMMARY"',
    """echo "id=$(gh api --paginate x | jq -s '[.[][] | select(.body | contains("m")) | .id] | first')" >> "$O" """,
    'test -n "$MLFLOW_TRACKING_URI"\n# a comment line\ndvc repro --force\nmlgate register',
])
def test_the_allow_list_accepts_the_tools_and_plumbing(script):
    assert disallowed(script) == []


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "rollout-monitor.yml"])
def test_every_run_step_calls_only_allowed_programs(name):
    bad = {label: disallowed(script) for label, script in run_steps(load(name))}
    assert {k: v for k, v in bad.items() if v} == {}


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "rollout-monitor.yml"])
def test_run_steps_take_values_from_env_not_inline_expressions(name):
    """`${{ }}` inside a script is pasted into the shell before it runs (script injection); use env."""
    assert [label for label, script in run_steps(load(name)) if "${{" in script] == []


def invalid_invocations(workflow: dict) -> list[str]:
    """`make` targets the Makefile lacks and `mlgate` command lines its parser rejects."""
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 - the registered subcommands
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    problems = []
    for label, script in run_steps(workflow):
        for command in shell_commands(script):
            words = [re.sub(r"\$\w+|\$\{\w+\}", "1", w) for w in command if not ASSIGNMENT.match(w)]
            if words[0] == "make" and not set(words[1:]) <= targets:
                problems.append(f"{label}: {' '.join(words)}")
            if words[0] == "mlgate" and (words[1] in commands or words[1] not in PENDING_SUBCOMMANDS):
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    problems.append(f"{label}: {' '.join(words)}")
    return problems


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "rollout-monitor.yml"])
def test_mlgate_and_make_commands_in_workflows_exist_with_valid_arguments(name, capsys):
    assert invalid_invocations(load(name)) == []


def test_invalid_invocations_are_found(capsys):
    steps = [{"run": "make tset"}, {"run": "mlgate register --bogus"}, {"run": "mlgate verdict\nmake test"}]
    assert invalid_invocations({"jobs": {"j": {"steps": steps}}}) == ["j/make tset: make tset",
                                                                      "j/mlgate register --bogus: mlgate register --bogus"]


@pytest.mark.parametrize("name", ["ci.yml", "cd.yml", "rollout-monitor.yml"])
def test_steps_use_first_party_actions_only(name):
    uses = [step["uses"] for job in load(name)["jobs"].values() for step in job.get("steps", []) if "uses" in step]
    assert uses and all(u.startswith("actions/") for u in uses)


def test_ci_runs_the_tests_and_every_gate_and_publishes_the_report():
    ci = load("ci.yml")
    assert set(ci[True]) == {"push", "pull_request"}  # YAML 1.1 reads the `on` key as True
    scripts = "\n".join(s for _, s in run_steps(ci))
    assert "make test" in scripts and "dvc repro" in scripts
    assert 'cat reports/report.md >> "$GITHUB_STEP_SUMMARY"' in scripts
    assert REPORT_MARKER in scripts and "--method PATCH" in scripts and "gh pr comment" in scripts
    gates = ci["jobs"]["gates"]["steps"]
    assert any(s.get("uses", "").startswith("actions/upload-artifact") for s in gates)
    repro = next(i for i, s in enumerate(gates) if s.get("run") == "dvc repro")
    assert "if" not in gates[repro] and "continue-on-error" not in gates[repro]  # a failed verdict fails the job
    cached = {s["with"]["path"] for s in gates if s.get("uses", "").startswith("actions/cache")}
    assert cached == {"~/.cache/mlgate", ".dvc/cache"}
    setup = next(s for s in gates if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip"


def test_ci_approval_job_waits_for_the_environment_and_checks_the_approver():
    job = load("ci.yml")["jobs"]["approve-model"]
    assert job["environment"] == "model-approval" and job["needs"] == "gates"
    scripts = "\n".join(s["run"] for s in job["steps"] if "run" in s)
    assert "actions/runs/$GITHUB_RUN_ID/approvals" in scripts and "mlgate approve" in scripts


def test_cd_registers_pushes_and_rolls_out_behind_approvals(base_params):
    cd = load("cd.yml")
    assert cd[True]["push"]["branches"] == ["main"] and "workflow_dispatch" in cd[True]
    assert cd["concurrency"]["group"].startswith("rollout-") and base_params["model"]["name"] in cd["concurrency"]["group"]
    assert cd["concurrency"]["cancel-in-progress"] is False
    assert {"MLFLOW_TRACKING_URI", "MLGATE_ENDPOINT"} <= set(cd["env"])
    assert all("secrets." in cd["env"][k] for k in ("MLFLOW_TRACKING_URI", "MLGATE_ENDPOINT"))
    scripts = {job: "\n".join(s["run"] for s in spec["steps"] if "run" in s) for job, spec in cd["jobs"].items()}
    assert "mlgate register" in scripts["register"] and "dvc push" in scripts["register"]
    assert scripts["register"].index("mlgate register") < scripts["register"].index("dvc push")
    assert cd["jobs"]["canary"]["environment"] == "canary" and "mlgate rollout start" in scripts["canary"]
    assert cd["jobs"]["production"]["environment"] == "production"
    assert "mlgate rollout promote" in scripts["production"]
    assert "--stage production" in scripts["production"] and "--stage canary" in scripts["canary"]


def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    """The bundled schema, with every proxy pointing at a closed port: any network use would fail."""
    exe = Path(sys.executable).with_name("check-jsonschema")
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed}
    return subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_workflows_are_valid_against_the_bundled_schema_offline():
    proc = check_jsonschema(*sorted(WORKFLOWS.glob("*.yml")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = load("ci.yml")
    del broken["jobs"]["test"]["runs-on"]
    broken["on"] = broken.pop(True)
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    proc = check_jsonschema(tmp_path / "broken.yml")
    assert proc.returncode == 1 and "runs-on" in proc.stdout
