"""The GitHub workflows, as templates `mlgate init` writes and as this repository's own copies.

Each workflow, the repository's and each template rendered for a team, is valid against the bundled
schema; every `run:` step calls only what the tests run here (make, mlgate, dvc, gh, plus
echo/cat/test/jq plumbing, and the one pinned `pip install` of mlgate) with arguments mlgate
accepts; permissions, secrets and action versions are the least and newest; and the repository's
files are the templates rendered with REPO_VALUES plus REPO_EXTRAS, nothing else (docs/WORKFLOWS.md).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from mlgate.pipelines.cli.main import build_parser
from mlgate.pipelines.project.templates import render, template_text
from mlgate.pipelines.report.markdown import REPORT_MARKER

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"
NAMES = ("ci.yml", "cd.yml", "rollout-monitor.yml")
PLACEHOLDERS = frozenset({"MLGATE_INSTALL", "MLGATE_VERSION", "PYTHON_VERSION"})
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
# What `mlgate init` fills in for a team's repository, and what this repository uses instead: it
# installs the working tree (make install) rather than a release from PyPI.
TEAM_VALUES = {"mlgate_install": f'python -m pip install "mlgate=={VERSION}"', "mlgate_version": VERSION,
               "python_version": "3.11"}
REPO_VALUES = {"mlgate_install": 'make install && echo "$PWD/.venv/bin" >> "$GITHUB_PATH"',
               "mlgate_version": VERSION, "python_version": "3.12"}
# All this repository's workflows add to the rendered templates: its own test suite and linter.
REPO_EXTRAS = {"ci.yml": {"jobs": ("test",), "steps": {"lint": ("make lint",)}}}
# The current major version of each action a workflow may use (first-party only), late 2026:
# docs/WORKFLOWS.md has the releases behind each.
CURRENT_MAJORS = {"actions/checkout": "v7", "actions/setup-python": "v7", "actions/cache": "v6",
                  "actions/upload-artifact": "v7", "actions/download-artifact": "v8"}
# The first word of every command a workflow runs. Tools: what developers run. Plumbing: moving a
# value into $GITHUB_OUTPUT / $GITHUB_STEP_SUMMARY, a precondition, picking a field from JSON.
TOOLS = frozenset({"make", "mlgate", "dvc", "gh"})
PLUMBING = frozenset({"echo", "cat", "test", "jq"})
ALLOWED = TOOLS | PLUMBING
# The one other command: a team's install line, mlgate pinned to the version that wrote the file.
PINNED_INSTALL = ["python", "-m", "pip", "install"]
PINNED_MLGATE = re.compile(r"mlgate==[0-9][0-9A-Za-z.+!-]*")
SEPARATORS = frozenset({";", "&&", "||", "|", "&", "\n", "(", ")", "|&", ";;"})
SUBSTITUTION = "__substitution__"
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# Which secret a step may receive, by what its script runs.
SECRET_USERS = {"MLFLOW_TRACKING_URI": ("mlgate ", "dvc repro", "$MLFLOW_TRACKING_URI"),
                "MLGATE_ENDPOINT": ("mlgate rollout",), "MLGATE_ADMIN_TOKEN": ("mlgate rollout",),
                "MLGATE_LOG_URL": ("mlgate rollout",), "DVC_REMOTE_URL": ("$DVC_REMOTE_URL",)}
# Which `mlgate rollout` actions change the server's routes, and which also read the prediction log.
ROUTE_CHANGING = re.compile(r"mlgate rollout (start|step|monitor|run|promote|abort)\b")
LOG_READING = re.compile(r"mlgate rollout (step|monitor|run)\b")
REDIRECTIONS = frozenset({">", ">>", "<", "2>", "&>"})
SECRET_REF = re.compile(r"^\$\{\{ secrets\.([A-Z_]+) \}\}$")


def load(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def rendered(name: str, values: dict[str, str] = TEAM_VALUES) -> dict:
    return yaml.safe_load(render(f"workflows/{name}", **values))


def every_workflow() -> list:
    """This repository's files and the templates as a team gets them, each as a pytest param."""
    return ([pytest.param(load, name, id=f"repo/{name}") for name in NAMES]
            + [pytest.param(rendered, name, id=f"template/{name}") for name in NAMES])


ALL = every_workflow()


def steps_of(workflow: dict) -> list[tuple[str, dict, dict]]:
    """(job id, job, step) of every step."""
    return [(job_id, job, step) for job_id, job in workflow["jobs"].items() for step in job.get("steps", [])]


def run_steps(workflow: dict) -> list[tuple[str, str]]:
    """(job/step label, script) of every step with a `run:`."""
    return [(f"{job_id}/{step.get('name') or step['run'][:40]}", step["run"])
            for job_id, _, step in steps_of(workflow) if "run" in step]


def job_scripts(job: dict) -> str:
    return "\n".join(step["run"] for step in job.get("steps", []) if "run" in step)


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


def is_pinned_install(command: list[str]) -> bool:
    return command[:4] == PINNED_INSTALL and len(command) == 5 and PINNED_MLGATE.fullmatch(command[4]) is not None


def disallowed(script: str) -> list[str]:
    return [first_word(c) for c in shell_commands(script) if first_word(c) not in ALLOWED and not is_pinned_install(c)]


@pytest.mark.parametrize("script", [
    "python -m pytest", "pip install mlgate", "FOO=1 python train.py", "make test && ./deploy.sh",
    "echo ok | sh", 'echo "id=$(curl -s http://example.com)"', "make test\nbash -c 'mlgate verdict'",
    'echo "$(gh api x | jq -r .a) $(gh api y | tee out)"', "echo 'multi\nline' ; rm -rf /",
    "python -m pip install mlgate", 'python -m pip install "mlgate==0.1.0" evil', "python -m pip install mlgate>=0.1",
    'python -m pip install "mlgate==0.1.0" && python -c "import os"',
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
    TEAM_VALUES["mlgate_install"], REPO_VALUES["mlgate_install"],
])
def test_the_allow_list_accepts_the_tools_and_plumbing(script):
    assert disallowed(script) == []


@pytest.mark.parametrize(("read", "name"), ALL)
def test_every_run_step_calls_only_allowed_programs(read, name):
    bad = {label: disallowed(script) for label, script in run_steps(read(name))}
    assert {k: v for k, v in bad.items() if v} == {}


def inline_expressions(workflow: dict) -> list[str]:
    """Steps whose script contains `${{ }}`: GitHub pastes it into the shell before it runs (script
    injection, e.g. a PR title with `"; curl ... | sh`); values reach a script through `env:`."""
    return [label for label, script in run_steps(workflow) if "${{" in script]


@pytest.mark.parametrize(("read", "name"), ALL)
def test_run_steps_take_values_from_env_not_inline_expressions(read, name):
    assert inline_expressions(read(name)) == []


def test_inline_expressions_are_found():
    steps = [{"name": "title", "run": 'echo "${{ github.event.pull_request.title }}"'},
             {"name": "safe", "env": {"TITLE": "${{ github.event.pull_request.title }}"}, "run": 'echo "$TITLE"'}]
    assert inline_expressions({"jobs": {"j": {"steps": steps}}}) == ["j/title"]


def invalid_invocations(workflow: dict) -> list[str]:
    """`make` targets the Makefile lacks and `mlgate` command lines its parser rejects."""
    parser = build_parser()
    targets = set(re.findall(r"^([A-Za-z][\w-]*):", (REPO / "Makefile").read_text(), re.MULTILINE))
    problems = []
    for label, script in run_steps(workflow):
        for command in shell_commands(script):
            words = [re.sub(r"\$\w+|\$\{\w+\}", "1", w) for w in without_redirections(command)
                     if not ASSIGNMENT.match(w)]
            if words[0] == "make" and not set(words[1:]) <= targets:
                problems.append(f"{label}: {' '.join(words)}")
            if words[0] == "mlgate":
                try:
                    parser.parse_args(words[1:])
                except SystemExit:
                    problems.append(f"{label}: {' '.join(words)}")
    return problems


def without_redirections(command: list[str]) -> list[str]:
    """The command's own words: a redirection operator and its target are the shell's."""
    words, skip = [], False
    for word in command:
        if skip:
            skip = False
        elif word in REDIRECTIONS:
            skip = True
        else:
            words.append(word)
    return words


@pytest.mark.parametrize(("read", "name"), ALL)
def test_mlgate_and_make_commands_in_workflows_exist_with_valid_arguments(read, name, capsys):
    assert invalid_invocations(read(name)) == []


def test_invalid_invocations_are_found(capsys):
    steps = [{"run": "make tset"}, {"run": "mlgate register --bogus"}, {"run": "mlgate verdict\nmake test"},
             {"run": 'mlgate rollout status >> "$GITHUB_STEP_SUMMARY"'}, {"run": "mlgate rollout monitr > out"}]
    assert invalid_invocations({"jobs": {"j": {"steps": steps}}}) == [
        "j/make tset: make tset", "j/mlgate register --bogus: mlgate register --bogus",
        "j/mlgate rollout monitr > out: mlgate rollout monitr"]


# --- templates and this repository's copies -----------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_templates_use_exactly_the_placeholders_mlgate_init_fills(name):
    assert set(re.findall(r"@@([A-Z_]+)@@", template_text(f"workflows/{name}"))) == PLACEHOLDERS


def test_a_template_is_never_rendered_half_filled():
    with pytest.raises(KeyError, match="PYTHON_VERSION"):
        render("workflows/ci.yml", mlgate_install="true", mlgate_version="0")


def test_a_team_gets_the_pinned_release_and_nothing_of_this_repository():
    for name in NAMES:
        text = render(f"workflows/{name}", **TEAM_VALUES)
        assert f'python -m pip install "mlgate=={VERSION}"' in text, name
        assert not re.search(r"\bmake |\.venv|pyproject|pipelines/|gates/|serving/", text), name


def without_repo_extras(name: str, workflow: dict) -> dict:
    """The workflow minus what REPO_EXTRAS says this repository adds (each extra must be there)."""
    extras = REPO_EXTRAS.get(name, {})
    assert set(extras.get("jobs", ())) <= set(workflow["jobs"])
    jobs = {}
    for job_id, job in workflow["jobs"].items():
        if job_id in extras.get("jobs", ()):
            continue
        added = extras.get("steps", {}).get(job_id, ())
        steps = [step for step in job["steps"] if step.get("run") not in added]
        assert len(job["steps"]) - len(steps) == len(added), f"{name} {job_id}: missing extra steps {added}"
        jobs[job_id] = {**job, "steps": steps}
    return {**workflow, "jobs": jobs}


@pytest.mark.parametrize("name", NAMES)
def test_the_repository_workflows_are_the_templates_rendered_plus_the_documented_extras(name):
    """Every job and step of the template, rendered with REPO_VALUES, is in .github/workflows exactly;
    the repository adds only REPO_EXTRAS. After editing a template, render it (REPO_VALUES) again."""
    assert without_repo_extras(name, load(name)) == rendered(name, REPO_VALUES)


def test_a_changed_template_step_or_a_missing_extra_is_caught():
    changed = load("ci.yml")
    changed["jobs"]["gates"]["steps"][0]["with"]["fetch-depth"] = 1
    assert without_repo_extras("ci.yml", changed) != rendered("ci.yml", REPO_VALUES)
    no_lint = load("ci.yml")
    no_lint["jobs"]["lint"]["steps"] = [s for s in no_lint["jobs"]["lint"]["steps"] if s.get("run") != "make lint"]
    with pytest.raises(AssertionError, match="missing extra steps"):
        without_repo_extras("ci.yml", no_lint)


# --- what an expert checks: actions, permissions, secrets ----------------------------------------

@pytest.mark.parametrize(("read", "name"), ALL)
def test_steps_use_first_party_actions_at_their_current_major_version(read, name):
    uses = [step["uses"] for _, _, step in steps_of(read(name)) if "uses" in step]
    assert uses and [u for u in uses if u.partition("@")[2] != CURRENT_MAJORS.get(u.partition("@")[0])] == []


@pytest.mark.parametrize(("read", "name"), ALL)
def test_checkouts_keep_no_credentials(read, name):
    checkouts = [step for _, _, step in steps_of(read(name)) if step.get("uses", "").startswith("actions/checkout")]
    assert checkouts and all(step["with"]["persist-credentials"] is False for step in checkouts)


def needed_permissions(job: dict) -> dict[str, str]:
    """The GITHUB_TOKEN scopes a job's steps use: the repository (checkout), PR comments, the PR of a
    commit, run lists, approval histories and another run's artifacts. Artifacts of the same run need none."""
    scripts, uses = job_scripts(job), [step.get("uses", "") for step in job.get("steps", [])]
    needed = {}
    if any(u.startswith("actions/checkout@") for u in uses):
        needed["contents"] = "read"
    other_runs = any(step.get("uses", "").startswith("actions/download-artifact@") and "run-id" in step.get("with", {})
                     for step in job.get("steps", []))
    if "/approvals" in scripts or "gh run list" in scripts or other_runs:
        needed["actions"] = "read"
    if "/pulls" in scripts:
        needed["pull-requests"] = "read"
    if "/comments" in scripts and re.search(r"--method (POST|PATCH)", scripts):
        needed["pull-requests"] = "write"
    return needed


@pytest.mark.parametrize(("read", "name"), ALL)
def test_no_permission_by_default_and_each_job_asks_for_the_least_it_needs(read, name):
    workflow = read(name)
    assert workflow["permissions"] == {}
    granted = {job_id: job.get("permissions") for job_id, job in workflow["jobs"].items()}
    assert granted == {job_id: needed_permissions(job) for job_id, job in workflow["jobs"].items()}


def test_only_the_comment_job_can_write_and_it_runs_no_code_from_the_pull_request():
    for name in NAMES:
        writers = {job_id for job_id, job in rendered(name)["jobs"].items() if "write" in job["permissions"].values()}
        assert writers == ({"report"} if name == "ci.yml" else set())
    report = rendered("ci.yml")["jobs"]["report"]
    assert not [step for step in report["steps"] if step.get("uses", "").startswith("actions/checkout")]
    assert {first_word(c) for c in shell_commands(job_scripts(report))} <= {"cat", "test", "jq", "gh", "echo"}


def secret_references(node, path=()) -> list[tuple[tuple, str]]:
    """(path, value) of every string in a workflow that reads the secrets context."""
    if isinstance(node, dict):
        return [ref for key, value in node.items() for ref in secret_references(value, (*path, key))]
    if isinstance(node, list):
        return [ref for i, value in enumerate(node) for ref in secret_references(value, (*path, i))]
    return [(path, node)] if isinstance(node, str) and "secrets." in node else []


def misplaced_secrets(workflow: dict) -> list[str]:
    """Secrets anywhere but in the env of a step whose script uses them under their own name (never a
    workflow or job env, an action's inputs, or the install step, which runs third-party code)."""
    problems = []
    for path, value in secret_references(workflow):
        match = SECRET_REF.match(value)
        if len(path) != 6 or path[0] != "jobs" or path[2] != "steps" or path[4] != "env" or not match:
            problems.append(f"{'/'.join(map(str, path))}: {value}")
            continue
        step = workflow["jobs"][path[1]]["steps"][path[3]]
        users = SECRET_USERS.get(match.group(1), ())
        if path[5] != match.group(1) or not any(u in step.get("run", "") for u in users):
            problems.append(f"{path[1]}/{step.get('name')}: {path[5]}")
    return problems


@pytest.mark.parametrize(("read", "name"), ALL)
def test_secrets_go_only_to_the_steps_that_use_them(read, name):
    assert misplaced_secrets(read(name)) == []


def test_misplaced_secrets_are_found():
    secret = "${{ secrets.MLGATE_ADMIN_TOKEN }}"
    workflow = {"env": {"MLGATE_ADMIN_TOKEN": secret}, "jobs": {"j": {"steps": [
        {"name": "install", "env": {"MLGATE_ADMIN_TOKEN": secret}, "run": TEAM_VALUES["mlgate_install"]},
        {"name": "ok", "env": {"MLGATE_ADMIN_TOKEN": secret}, "run": "mlgate rollout step"},
        {"name": "renamed", "env": {"TOKEN": secret}, "run": "mlgate rollout step"},
        {"name": "action", "uses": "actions/checkout@v7", "with": {"token": secret}}]}}}
    assert misplaced_secrets(workflow) == ["env/MLGATE_ADMIN_TOKEN: " + secret, "j/install: MLGATE_ADMIN_TOKEN",
                                           "j/renamed: TOKEN", "jobs/j/steps/3/with/token: " + secret]


@pytest.mark.parametrize(("read", "name"), ALL)
def test_every_step_that_needs_a_secret_gets_it(read, name):
    for job_id, _, step in steps_of(read(name)):
        script, env = step.get("run", ""), step.get("env", {})
        if "mlgate rollout" in script:
            assert "MLFLOW_TRACKING_URI" in env, f"{job_id}/{step['name']}"
        if ROUTE_CHANGING.search(script):
            assert {"MLGATE_ENDPOINT", "MLGATE_ADMIN_TOKEN"} <= set(env), f"{job_id}/{step['name']}"
        if LOG_READING.search(script):
            assert "MLGATE_LOG_URL" in env, f"{job_id}/{step['name']}"
        if re.search(r"dvc repro|mlgate (register|approve --version)", script):
            assert "MLFLOW_TRACKING_URI" in env, f"{job_id}/{step['name']}"


# --- ci.yml ---------------------------------------------------------------------------------------

def test_ci_lints_runs_every_gate_and_publishes_the_report():
    ci = rendered("ci.yml")
    assert set(ci[True]) == {"pull_request", "push", "workflow_dispatch"}  # YAML 1.1 reads `on` as True
    assert ci[True]["push"]["branches"] == ["main"]
    lint, gates = job_scripts(ci["jobs"]["lint"]), ci["jobs"]["gates"]["steps"]
    assert "mlgate config validate" in lint and "dvc dag" in lint
    scripts = job_scripts(ci["jobs"]["gates"])
    assert "dvc repro" in scripts and 'cat reports/report.md >> "$GITHUB_STEP_SUMMARY"' in scripts
    assert any(s.get("uses", "").startswith("actions/upload-artifact") and s["with"]["path"] == "reports/" for s in gates)
    repro = next(i for i, s in enumerate(gates) if s.get("run") == "dvc repro")
    assert "if" not in gates[repro] and "continue-on-error" not in gates[repro]  # a failed verdict fails the job
    cached = {s["with"]["path"] for s in gates if s.get("uses", "").startswith("actions/cache")}
    assert cached == {"~/.cache/mlgate", ".dvc/cache"}
    deepchecks = next(s for s in gates if s.get("with", {}).get("path") == "~/.cache/mlgate")
    assert f"mlgate-{VERSION}" in deepchecks["with"]["key"]  # an upgrade brings new pins: a new environment
    setup = next(s for s in gates if s.get("uses", "").startswith("actions/setup-python"))
    assert setup["with"]["cache"] == "pip" and setup["with"]["python-version"] == "${{ env.PYTHON_VERSION }}"
    assert ci["env"]["PYTHON_VERSION"] == TEAM_VALUES["python_version"]


def test_ci_reports_metrics_and_plots_against_main_in_the_sticky_comment():
    ci = rendered("ci.yml")
    gates = ci["jobs"]["gates"]
    assert gates["steps"][0]["uses"].startswith("actions/checkout") and gates["steps"][0]["with"]["fetch-depth"] == 0
    scripts = job_scripts(gates)
    assert "dvc metrics diff main --md >> reports/metrics-diff.md" in scripts
    assert "dvc plots diff main -o reports/plots-diff" in scripts  # HTML, uploaded with reports/
    report = ci["jobs"]["report"]
    assert report["needs"] == "gates" and "!cancelled()" in report["if"]  # a failed verdict is reported too
    body = job_scripts(report)
    assert REPORT_MARKER in body and "reports/metrics-diff.md" in body
    assert "--method PATCH" in body and "--method POST" in body


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("bash") is None, reason="needs bash and jq")
def test_the_comment_body_is_the_report_then_the_metrics_diff(tmp_path):
    step = next(s for s in rendered("ci.yml")["jobs"]["report"]["steps"] if s.get("id") == "body")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "report.md").write_text(f"{REPORT_MARKER}\n# verdict: PASS\n")
    env = {"PATH": os.environ["PATH"], "RUNNER_TEMP": str(tmp_path)}
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, check=True)  # no diff: report only
    (tmp_path / "reports" / "metrics-diff.md").write_text("| Path | Metric |\n")
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, check=True)
    body = yaml.safe_load((tmp_path / "comment.json").read_text())["body"]
    assert body.startswith(REPORT_MARKER) and body.endswith("| Path | Metric |\n")


def test_ci_approval_job_waits_for_the_environment_and_checks_the_approver():
    job = rendered("ci.yml")["jobs"]["approve-model"]
    assert job["environment"] == "model-approval" and job["needs"] == "gates"
    scripts = job_scripts(job)
    assert "actions/runs/$GITHUB_RUN_ID/approvals" in scripts and "mlgate approve --dry-run" in scripts


def required_verdict(step: dict, results: dict[str, str]) -> int:
    env = {"PATH": os.environ["PATH"], **{k: results[k] for k in step["env"]}}
    return subprocess.run(["bash", "-e", "-c", step["run"]], env=env, capture_output=True).returncode


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_required_check_fails_unless_every_gate_ran_and_passed():
    """`gates-required` is the job to mark required: GitHub counts a skipped required job as passed,
    so `gates` (skipped when cancelled or when a needed job fails) must not be the required one."""
    ci = rendered("ci.yml")
    job = ci["jobs"]["gates-required"]
    assert job["if"] == "always()" and set(job["needs"]) == {"lint", "gates", "approve-model"}
    assert [j for j, spec in ci["jobs"].items() if spec.get("if") == "always()"] == ["gates-required"]
    assert "if" not in ci["jobs"]["gates"] and "needs" not in ci["jobs"]["gates"]
    gates_step, approval_step = job["steps"]
    assert gates_step["env"] == {"LINT": "${{ needs.lint.result }}", "GATES": "${{ needs.gates.result }}"}
    assert approval_step["env"] == {"APPROVAL": "${{ needs.approve-model.result }}"}
    assert approval_step["if"] == "github.event_name == 'pull_request'"
    assert required_verdict(gates_step, {"LINT": "success", "GATES": "success"}) == 0
    for lint, gates in [("success", "skipped"), ("success", "failure"), ("failure", "success"), ("success", "cancelled")]:
        assert required_verdict(gates_step, {"LINT": lint, "GATES": gates}) == 1
    assert required_verdict(approval_step, {"APPROVAL": "success"}) == 0
    assert required_verdict(approval_step, {"APPROVAL": "skipped"}) == 1


def test_this_repository_also_runs_its_tests_and_its_linter():
    ci = load("ci.yml")
    assert job_scripts(ci["jobs"]["test"]) == "make test" and "make lint" in job_scripts(ci["jobs"]["lint"])
    assert "needs" not in ci["jobs"]["test"] and "if" not in ci["jobs"]["test"]  # never skipped: can be required


# --- release: ci.yml's approval, cd.yml and rollout-monitor.yml ---------------------------------

def test_the_approval_job_registers_the_judged_model_and_records_the_approval_on_it():
    job = rendered("ci.yml")["jobs"]["approve-model"]
    runs = [step.get("run", "") for step in job["steps"]]
    dry, register = runs.index(next(r for r in runs if "mlgate approve --dry-run" in r)), \
        runs.index("mlgate register --from-training-run --no-alias")
    approve = runs.index(next(r for r in runs if "mlgate approve --version" in r))
    assert dry < register < approve and "--stage candidate" in runs[approve]
    assert 'jq -r .version reports/registration.json' in job_scripts(job)


def test_only_the_merged_code_pushes_to_the_dvc_remote():
    steps = rendered("ci.yml")["jobs"]["gates"]["steps"]
    dvc = [s for s in steps if "DVC_REMOTE_URL" in s.get("env", {}) or s.get("run") == "dvc push"]
    assert len(dvc) == 2 and all(s["if"] == "github.event_name == 'push'" for s in dvc)


def test_cd_rolls_out_the_approved_model_by_digest_without_training_again():
    """cd.yml re-ran `dvc repro --force` and recorded the PR reviewer's approval on a model they never
    saw; it now starts the rollout of the version the PR registered, found by its digest, and leaves."""
    cd = rendered("cd.yml")
    assert cd[True]["push"]["branches"] == ["main"] and "workflow_dispatch" in cd[True]
    assert cd["concurrency"]["group"].startswith("mlgate-rollout-") and cd["concurrency"]["cancel-in-progress"] is False
    assert list(cd["jobs"]) == ["start"]
    job = cd["jobs"]["start"]
    scripts = job_scripts(job)
    assert not re.search(r"dvc (repro|push)|mlgate (register|train|rollout run)|mlgate approve", scripts)
    assert job["timeout-minutes"] <= 20 and "environment" not in job
    download = next(s for s in job["steps"] if s.get("uses", "").startswith("actions/download-artifact"))
    assert download["with"]["run-id"] == "${{ steps.ci-run.outputs.id }}" and download["with"]["name"] == "mlgate-reports"
    assert "gh run list" in scripts and "--event pull_request --status success" in scripts
    start = next(s for s in job["steps"] if "mlgate rollout start" in s.get("run", ""))
    assert start["run"] == 'mlgate rollout start --digest "$DIGEST" --approved-as candidate'
    assert start["env"]["DIGEST"] == "${{ steps.judged.outputs.digest }}"


@pytest.mark.skipif(shutil.which("jq") is None or shutil.which("bash") is None, reason="needs bash and jq")
def test_the_digest_cd_rolls_out_is_the_one_the_verdict_names(tmp_path):
    step = next(s for s in rendered("cd.yml")["jobs"]["start"]["steps"] if s.get("id") == "judged")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "verdict.json").write_text('{"status": "PASS", "model": {"digest": "ab12"}}')
    env = {"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(tmp_path / "out")}
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=env, check=True)
    assert (tmp_path / "out").read_text() == "digest=ab12\n"


def test_the_monitor_steps_on_a_schedule_and_starts_the_approval_job_it_asks_for():
    from mlgate.pipelines.rollout.monitor import outputs

    monitor, cd = rendered("rollout-monitor.yml"), rendered("cd.yml")
    assert monitor[True]["schedule"] and monitor[True]["workflow_dispatch"]["inputs"]["repeat"]["type"] == "boolean"
    look = monitor["jobs"]["monitor"]
    assert look["concurrency"]["group"] != cd["concurrency"]["group"]  # a scheduled look never displaces a merge
    assert "concurrency" not in monitor  # at job level: a waiting approval never holds back the next looks
    runs = {step["id"]: step["run"] for step in look["steps"] if step.get("id", "").startswith("look")}
    assert runs == {"look": "mlgate rollout monitor", "look-again": "mlgate rollout monitor --repeat"}
    assert look["timeout-minutes"] <= 20
    read = set(re.findall(r"steps\.look(?:-again)?\.outputs\.(\w+)", json.dumps(look["outputs"])))
    assert read == {"version", "approval_needed", "environment"} and read <= set(outputs(None, None))
    approve = monitor["jobs"]["approve"]
    assert approve["needs"] == "monitor" and "needs.monitor.outputs.approval_needed != ''" in approve["if"]
    assert "!cancelled()" in approve["if"]  # the look exits 1 when it asks: the approval job runs anyway
    assert approve["environment"] == "${{ needs.monitor.outputs.environment }}"
    scripts = job_scripts(approve)
    assert "actions/runs/$GITHUB_RUN_ID/approvals" in scripts and "$ENV.ENVIRONMENT" in scripts
    record = next(s for s in approve["steps"] if "mlgate approve" in s.get("run", ""))
    assert '--stage "$STAGE"' in record["run"] and "--registered-report" in record["run"]
    assert record["env"]["STAGE"] == "${{ needs.monitor.outputs.approval_needed }}"


def test_nothing_waits_in_a_long_running_job_to_roll_out():
    for name in ("cd.yml", "rollout-monitor.yml"):
        for job_id, job in rendered(name)["jobs"].items():
            assert job["timeout-minutes"] <= 20, f"{name} {job_id}"
            assert "mlgate rollout run" not in job_scripts(job), f"{name} {job_id}"


# --- the schema GitHub applies -------------------------------------------------------------------

def check_jsonschema(*files: Path) -> subprocess.CompletedProcess:
    """The bundled schema, with every proxy pointing at a closed port: any network use would fail."""
    exe = Path(sys.executable).with_name("check-jsonschema")
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "HTTP_PROXY": closed, "HTTPS_PROXY": closed, "http_proxy": closed, "https_proxy": closed}
    return subprocess.run([str(exe), "--builtin-schema", "vendor.github-workflows", *map(str, files)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_workflows_and_rendered_templates_are_valid_against_the_bundled_schema_offline(tmp_path):
    for name in NAMES:
        (tmp_path / name).write_text(render(f"workflows/{name}", **TEAM_VALUES))
    proc = check_jsonschema(*sorted(WORKFLOWS.glob("*.yml")), *(tmp_path / name for name in NAMES))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_schema_check_catches_a_broken_workflow(tmp_path):
    broken = load("ci.yml")
    del broken["jobs"]["gates"]["runs-on"]
    broken["on"] = broken.pop(True)
    (tmp_path / "broken.yml").write_text(yaml.safe_dump(broken))
    proc = check_jsonschema(tmp_path / "broken.yml")
    assert proc.returncode == 1 and "runs-on" in proc.stdout
