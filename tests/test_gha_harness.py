"""The local GitHub Actions runner (tests/gha_harness.py) the workflow journey tests stand on: expressions, job and
step conditions, outputs and env files, workspaces, the stand-ins, triggers, masking. The shipped workflows run
through it in tests/test_ci_journey.py."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from gha_harness import (
    ActionFailed,
    Event,
    ExprContext,
    ExpressionError,
    HarnessError,
    StepContext,
    evaluate,
    interpolate,
    run_workflow,
    triggers,
)

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PATH": "/usr/bin:/bin"}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A one-commit repo on main with a file and a folder."""
    r = tmp_path / "repo"
    (r / "sub").mkdir(parents=True)
    git(r, "init", "-q", "-b", "main")
    git(r, "config", "user.email", "t@example.invalid")
    git(r, "config", "user.name", "t")
    (r / "hello.txt").write_text("hello\n")
    (r / "sub" / "inner.txt").write_text("inner\n")
    git(r, "add", ".")
    git(r, "commit", "-q", "-m", "base")
    return r


def push(repo: Path) -> Event:
    return Event(name="push", payload={"before": "0" * 40}, sha=git(repo, "rev-parse", "HEAD"))


def wf(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "wf.yml"
    p.write_text(textwrap.dedent(text))
    return p


def go(tmp_path: Path, repo: Path, text: str, event: Event | None = None, **kw):
    return run_workflow(wf(tmp_path, text), event or push(repo), repo, base_env=ENV, workdir=tmp_path / "gha", **kw)


def test_outputs_single_and_heredoc_reach_later_steps_and_dependent_jobs(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          a:
            runs-on: ubuntu-latest
            outputs:
              one: ${{ steps.w.outputs.one }}
              many: ${{ steps.w.outputs.many }}
            steps:
              - id: w
                run: |
                  echo "one=1=x" >> "$GITHUB_OUTPUT"
                  { echo "many<<EOF_1"; echo "line a"; echo "line b"; echo "EOF_1"; } >> "$GITHUB_OUTPUT"
              - name: read
                env:
                  MANY: ${{ steps.w.outputs.many }}
                run: test "$MANY" = "$(printf 'line a\\nline b')" && echo "one=${{ steps.w.outputs.one }}"
          b:
            needs: a
            runs-on: ubuntu-latest
            steps:
              - run: echo "got ${{ needs.a.outputs.one }} / ${{ needs.a.outputs.many }}"
    """)  # fmt: skip
    a = run.job("a")
    assert a.result == "success" and a.step("w").outputs == {"one": "1=x", "many": "line a\nline b"}
    assert a.step("read").stdout.strip() == "one=1=x"
    assert a.outputs == {"one": "1=x", "many": "line a\nline b"}
    assert run.job("b").result == "success" and run.job("b").steps[0].stdout == "got 1=x / line a\nline b\n"


def test_env_layers_github_env_path_and_default_variables(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        env:
          A: wf
          B: wf
          C: wf
          D: ${{ github.event_name }}-${{ vars.V }}
        jobs:
          j:
            runs-on: ubuntu-latest
            env:
              B: job
              C: job
            steps:
              - env:
                  C: step
                run: |
                  echo "$A $B $C $D"
                  echo "E=from-env-file" >> "$GITHUB_ENV"
                  { echo "M<<X"; echo "m1"; echo "m2"; echo "X"; } >> "$GITHUB_ENV"
                  echo "B=overridden" >> "$GITHUB_ENV"
                  echo "GITHUB_SHA=nope" >> "$GITHUB_ENV"
                  mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\\necho tool\\n' > "$RUNNER_TEMP/bin/mytool"
                  chmod +x "$RUNNER_TEMP/bin/mytool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
              - env:
                  FROM_CTX: ${{ env.E }}
                run: |
                  echo "$A $B $C $E $FROM_CTX ${M//$'\\n'/+}"
                  mytool
                  echo "$GITHUB_SHA $GITHUB_EVENT_NAME $GITHUB_ACTIONS $CI $RUNNER_OS"
                  test "$GITHUB_WORKSPACE" = "$PWD" && grep -q before "$GITHUB_EVENT_PATH" && echo ws-ok
    """, vars={"V": "v1"})  # fmt: skip
    s1, s2 = run.job("j").steps
    assert s1.stdout.strip() == "wf job step push-v1"
    lines = s2.stdout.splitlines()
    assert lines[0] == "wf overridden job from-env-file from-env-file m1+m2"
    assert lines[1:] == ["tool", f"{push(repo).sha} push true true Linux", "ws-ok"]
    assert "Can't overwrite GITHUB_SHA" in run.log


def test_step_conditions_after_a_failing_step(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - id: ok
                run: echo fine
              - id: boom
                run: |
                  false
                  echo never
              - name: default
                run: echo skipped
              - name: on failure
                if: failure() && steps.boom.outcome == 'failure'
                run: echo cleanup
              - name: always
                if: ${{ always() }}
                run: echo always
              - name: plain condition still implies success()
                if: steps.boom.conclusion == 'failure'
                run: echo no
    """)  # fmt: skip
    j = run.job("j")
    assert [s.outcome for s in j.steps] == ["success", "failure", "skipped", "success", "success", "skipped"]
    assert j.result == "failure" and j.step("boom").exit_code == 1 and "never" not in j.step("boom").stdout


def test_continue_on_error_and_pipefail_only_with_explicit_bash(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          default_shell:
            runs-on: ubuntu-latest
            steps:
              - run: false | true
          explicit_bash:
            runs-on: ubuntu-latest
            defaults:
              run:
                shell: bash
            steps:
              - id: pipe
                continue-on-error: true
                run: false | true
              - run: echo "after ${{ steps.pipe.outcome }} ${{ steps.pipe.conclusion }}"
              - shell: python
                run: print("py", 1 + 1)
    """)  # fmt: skip
    assert run.job("default_shell").result == "success"
    e = run.job("explicit_bash")
    assert e.result == "success" and e.steps[0].outcome == "failure" and e.steps[0].conclusion == "success"
    assert e.steps[1].stdout == "after failure success\n" and e.steps[2].stdout == "py 2\n"


def test_needs_results_skip_and_always(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          x:
            runs-on: ubuntu-latest
            steps:
              - run: exit 3
          dep:
            needs: x
            runs-on: ubuntu-latest
            steps:
              - run: echo should not run
          dep_of_skipped:
            needs: dep
            runs-on: ubuntu-latest
            steps:
              - run: echo should not run
          report:
            needs: [x]
            if: always()
            runs-on: ubuntu-latest
            steps:
              - run: echo "x was ${{ needs.x.result }}"
          on_failure:
            needs: dep
            if: failure() && needs.dep.result == 'skipped'
            runs-on: ubuntu-latest
            steps:
              - run: echo "ancestor failed"
    """)  # fmt: skip
    assert {j: r.result for j, r in run.jobs.items()} == {
        "x": "failure", "dep": "skipped", "dep_of_skipped": "skipped", "report": "success", "on_failure": "success",
    }  # fmt: skip
    assert run.job("report").steps[0].stdout == "x was failure\n" and run.job("x").steps[0].exit_code == 3


def test_jobs_run_in_topological_order_of_needs(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          last:
            needs: [middle, first]
            runs-on: ubuntu-latest
            steps: [{run: echo last}]
          middle:
            needs: first
            runs-on: ubuntu-latest
            steps: [{run: echo middle}]
          first:
            runs-on: ubuntu-latest
            steps: [{run: echo first}]
    """)  # fmt: skip
    assert list(run.jobs) == ["first", "middle", "last"]


def test_working_directory_step_job_and_workflow_defaults(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        defaults:
          run:
            working-directory: sub
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
              - run: cat inner.txt
              - working-directory: .
                run: cat hello.txt
          k:
            runs-on: ubuntu-latest
            defaults:
              run:
                working-directory: nowhere
            steps:
              - run: pwd
    """)  # fmt: skip
    j = run.job("j")
    assert [s.stdout for s in j.steps[1:]] == ["inner\n", "hello\n"]
    assert run.job("k").result == "failure" and "working directory" in run.job("k").steps[0].stderr


def ectx(**values) -> ExprContext:
    base = {
        "github": {"event": {"pull_request": {"labels": [{"name": "preview"}, {"name": "Bug"}], "number": 7}},
                   "event_name": "pull_request"},
        "env": {"N": "3", "EMPTY": "", "JSON": '{"a": [1, 2], "b": "x"}'},
        "steps": {"s": {"outputs": {"rc": "0", "v": "2"}}},
        "inputs": {"dry-run": True},
        "vars": {}, "secrets": {},
    }  # fmt: skip
    return ExprContext({**base, **values})


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("1 == 1.0", True),
        ("'abc' == 'ABC'", True),  # strings compare case-insensitively
        ("'1' == 1", True),  # different kinds: both to numbers
        ("'' == 0", True),
        ("null == 0", True),
        ("true == 1", True),
        ("'0x10' == 16", True),
        ("'abc' == 0", False),  # NaN
        ("NaN == NaN", False),
        ("steps.s.outputs.rc != '0'", False),
        ("steps.s.outputs.v > 10", False),  # '2' → 2
        ("'b' > 'A'", True),
        ("1 < 2 && 2 <= 2 && 3 >= 3 && !(1 > 2)", True),
        ("'a' && 'b'", "b"),  # && and || return an operand
        ("'' || 'fallback'", "fallback"),
        ("0 && 'x'", 0),
        ("steps.nope.outputs.x || 'default'", "default"),
        ("steps.nope.outputs.x", None),  # missing properties are null
        ("github.event.missing.deeper == ''", True),
        ("github['event']['pull_request'].number", 7),
        ("contains(github.event.pull_request.labels.*.name, 'preview')", True),
        ("contains(github.event.pull_request.labels.*.name, 'bug')", True),
        ("contains(github.event.pull_request.labels.*.name, 'pre')", False),  # array: element equality
        ("contains('Hello world', 'WORLD')", True),  # string: substring, case-insensitive
        ("github.event.pull_request.labels.*.name", ["preview", "Bug"]),
        ("startsWith('refs/heads/main', 'refs/HEADS')", True),
        ("endsWith('deploy/a.yaml', '.YAML')", True),
        ("format('{0}-{1} {{x}}', 'pr', 7)", "pr-7 {x}"),
        ("join(github.event.pull_request.labels.*.name, ', ')", "preview, Bug"),
        ("join('solo')", "solo"),
        ("fromJSON(env.JSON).a[1]", 2),
        ("fromJSON('true')", True),
        ("fromJSON(env.N) > 2", True),
        ("toJSON(fromJSON(env.JSON).a)", "[\n  1,\n  2\n]"),
        ("inputs.dry-run", True),
        ("'It''s'", "It's"),
        ("-2.5e1", -25.0),
        ("env.EMPTY == null", True),
        ("github.event_name == 'pull_request' && github.event.action != 'closed'", True),
    ],
)
def test_expression_table(expr, expected):
    assert evaluate(expr, ectx()) == expected


def test_interpolation_and_syntax_errors():
    c = ectx()
    assert interpolate("pr-${{ github.event.pull_request.number }}-${{ env.MISSING }}!", c) == "pr-7-!"
    assert interpolate("${{ 1 == 1 }}", c) is True and interpolate("${{ '}}' }}", c) == "}}"
    assert interpolate("${{ 3 }} x ${{ 0.5 }} ${{ null }}${{ true }}", c) == "3 x 0.5 true"
    assert math.isnan(evaluate("fromJSON('\"x\"') == 1 && 1 || NaN", c))
    for bad, why in [("\"double\"", "single quotes"), ("a.b", "named-value"), ("nope(1)", "unknown function"),
                     ("1 +", "unsupported"), ("contains('a')", "arguments"), ("(1", "expected")]:  # fmt: skip
        with pytest.raises(ExpressionError, match=why):
            evaluate(bad, c)


def test_hashfiles_is_sha256_over_file_digests(tmp_path):
    import hashlib

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.txt").write_text("x")
    (tmp_path / "b.txt").write_text("b")
    c = ExprContext({}, workspace=tmp_path)
    want = hashlib.sha256(hashlib.sha256(b"x").digest()).hexdigest()
    assert evaluate("hashFiles('**/x.txt')", c) == want
    assert evaluate("hashFiles('**.txt', '!b.txt')", c) == want
    assert evaluate("hashFiles('none/**')", c) == ""


def test_an_unsupported_expression_anywhere_fails_before_anything_runs(tmp_path, repo):
    with pytest.raises(ExpressionError, match="single quotes"):
        go(tmp_path, repo, """
            on: push
            jobs:
              j:
                runs-on: ubuntu-latest
                steps:
                  - run: touch ran
                  - if: github.ref == "refs/heads/main"
                    run: echo x
        """)  # fmt: skip
    assert not list((tmp_path / "gha").rglob("ran"))


CHANGED = ["deploy/x/a/b.yaml"]


@pytest.mark.parametrize(
    ("on", "event", "changed", "expected"),
    [
        ({"pull_request": {"paths": ["deploy/x/**"]}}, "pr", CHANGED, True),
        ({"pull_request": {"paths": ["deploy/*.yaml"]}}, "pr", ["deploy/x/a.yaml"], False),
        ({"pull_request": {"paths": ["deploy/*.yaml"]}}, "pr", ["deploy/a.yaml"], True),
        ({"pull_request": {"paths": ["deploy/**.yaml"]}}, "pr", ["deploy/x/a.yaml"], True),
        ({"pull_request": {"paths": ["**/b.yaml"]}}, "pr", ["b.yaml"], True),
        ({"pull_request": {"paths": ["deploy/**", "!deploy/x/**"]}}, "pr", CHANGED, False),
        ({"pull_request": {"paths": ["deploy/**", "!deploy/x/**", "deploy/x/a/*"]}}, "pr", CHANGED, True),
        ({"pull_request": {"paths-ignore": ["docs/**"]}}, "pr", ["docs/a.md"], False),
        ({"pull_request": {"paths-ignore": ["docs/**"]}}, "pr", ["docs/a.md", "x.py"], True),
        ({"pull_request": {"branches": ["main"]}}, "pr", [], True),
        ({"pull_request": {"branches": ["release/*"]}}, "pr", [], False),
        ({"pull_request": {"types": ["closed"]}}, "pr", [], False),  # the event's action is synchronize
        ({"pull_request": None}, "pr", [], True),
        ({"pull_request": None}, "pr_labeled", [], False),  # default types: opened, synchronize, reopened
        ({"pull_request": {"types": ["labeled"]}}, "pr_labeled", [], True),
        ({"push": {"branches": ["main"], "paths": ["deploy/**.yaml"]}}, "push", ["deploy/a.yaml"], True),
        ({"push": {"branches": ["main"], "paths": ["deploy/**.yaml"]}}, "push", ["README.md"], False),
        ({"push": {"branches": ["!main", "feature/**"]}}, "push", [], False),
        ({"push": {"branches": ["main"]}}, "tag", [], False),  # only branches: tags do not trigger
        ({"push": {"tags": ["v*"]}}, "tag", [], True),
        ({"push": None}, "pr", [], False),
        ({"workflow_dispatch": None, "schedule": [{"cron": "17 * * * *"}]}, "schedule", [], True),
        ({"workflow_dispatch": None}, "dispatch", [], True),
    ],
)
def test_triggers(tmp_path, on, event, changed, expected):
    p = tmp_path / "t.yml"
    p.write_text(yaml.safe_dump({"on": on, "jobs": {}}))
    events = {
        "pr": Event("pull_request", {"action": "synchronize", "pull_request": {"base": {"ref": "main"}}}, "s"),
        "pr_labeled": Event("pull_request", {"action": "labeled"}, "s", base_ref="main"),
        "push": Event("push", {}, "s"),
        "tag": Event("push", {}, "s", ref="refs/tags/v1.0"),
        "schedule": Event("schedule", {}, "s"),
        "dispatch": Event("workflow_dispatch", {}, "s"),
    }
    assert triggers(p, events[event], changed) is expected


STICKY = """
    on: pull_request
    permissions: {}
    jobs:
      c:
        runs-on: ubuntu-latest
        permissions:
          pull-requests: write
        steps:
          - run: echo "# cost" > diff.md
          - uses: marocchino/sticky-pull-request-comment@abc
            with:
              header: my-header
              path: diff.md
"""


def pr_event(repo: Path, fork: bool) -> Event:
    payload = {"action": "synchronize", "pull_request": {"number": 7, "head": {"repo": {"fork": fork}},
                                                         "base": {"ref": "main"}}}  # fmt: skip
    return Event("pull_request", payload, git(repo, "rev-parse", "HEAD"), ref="refs/pull/7/merge", base_ref="main")


def test_sticky_comment_written_with_write_permission(tmp_path, repo):
    run = go(tmp_path, repo, STICKY, pr_event(repo, fork=False))
    assert run.job("c").result == "success" and (run.comments / "my-header.md").read_text() == "# cost\n"
    assert run.job("c").permissions == {"pull-requests": "write"}
    assert run.job("c").token_permissions["pull-requests"] == "write"


def test_sticky_comment_fails_on_a_fork_pr_and_without_permission(tmp_path, repo):
    run = go(tmp_path, repo, STICKY, pr_event(repo, fork=True))
    step = run.job("c").steps[1]
    assert run.job("c").result == "failure" and step.outcome == "failure"
    assert "Resource not accessible by integration" in step.stderr and not run.comments.exists()
    assert run.job("c").token_permissions["pull-requests"] == "read"
    no_perm = STICKY.replace("pull-requests: write", "contents: read")
    run = go(tmp_path, repo, no_perm, pr_event(repo, fork=False))
    assert run.job("c").result == "failure" and "Resource not accessible" in run.job("c").steps[1].stderr


def test_checkout_fills_an_empty_workspace_and_jobs_do_not_share_files(tmp_path, repo):
    git(repo, "checkout", "-q", "-b", "other")
    (repo / "other.txt").write_text("o\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "other")
    git(repo, "tag", "v1")
    git(repo, "checkout", "-q", "main")
    run = go(tmp_path, repo, """
        on: push
        jobs:
          bare:
            runs-on: ubuntu-latest
            steps:
              - run: ls -A | wc -l && touch made-here
          shallow:
            needs: bare
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
              - run: |
                  test ! -e made-here && cat hello.txt && git branch --show-current
                  git rev-parse --verify -q origin/other || echo no-origin-other
          full:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
                with:
                  fetch-depth: 0
              - run: git rev-parse --verify -q origin/other >/dev/null && git tag && git show origin/other:other.txt
          at_ref:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/checkout@v4
                with:
                  ref: other
              - run: cat other.txt
    """)  # fmt: skip
    assert run.job("bare").steps[0].stdout.strip() == "0"
    assert run.job("shallow").steps[1].stdout.split() == ["hello", "main", "no-origin-other"]
    assert run.job("full").steps[1].stdout.split() == ["v1", "o"], run.job("full").steps[1].stderr
    assert run.job("at_ref").steps[1].stdout == "o\n"
    assert run.job("bare").workspace != run.job("shallow").workspace


def test_upload_artifact_and_setup_python(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - uses: actions/setup-python@v5
                with:
                  python-version: "3.11"
              - run: |
                  mkdir -p out/deep && echo 1 > out/a.json && echo 2 > out/deep/b.json && echo r > review.json
                  python -c 'import sys; print(sys.executable)'
              - uses: actions/upload-artifact@v4
                with:
                  name: bundle
                  path: |
                    out/**/*.json
                    missing.txt
              - uses: actions/upload-artifact@v4
                with:
                  name: review
                  path: review.json
              - uses: actions/upload-artifact@v4
                with:
                  name: none
                  path: nothing/*
                  if-no-files-found: error
    """)  # fmt: skip
    j = run.job("j")
    assert j.steps[1].stdout.strip() == sys.executable
    files = sorted(str(p.relative_to(run.artifacts)) for p in run.artifacts.rglob("*") if p.is_file())
    # the artifact's root is the search paths' least common ancestor: out/ and missing.txt → the workspace
    assert files == ["bundle/out/a.json", "bundle/out/deep/b.json", "review/review.json"]
    assert j.steps[4].outcome == "failure" and "No files were found" in j.steps[4].stderr


def test_a_uses_without_a_stand_in_is_a_clear_error(tmp_path, repo):
    text = """
        on: push
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - name: pulumi up
                uses: pulumi/actions@8e5e406f4007fca908480587cb9893c07090f58d
    """
    with pytest.raises(HarnessError, match=r"no stand-in for action 'pulumi/actions'.*pulumi up"):
        go(tmp_path, repo, text)
    seen: list[StepContext] = []

    def pulumi(ctx: StepContext) -> dict:
        seen.append(ctx)
        return {"endpointUrl": "http://x"}

    run = go(tmp_path, repo, text, actions={"pulumi/actions": pulumi})
    assert run.job("j").steps[0].outputs == {"endpointUrl": "http://x"} and seen[0].env["GITHUB_ACTIONS"] == "true"


def test_stand_ins_receive_evaluated_inputs_set_env_and_can_fail(tmp_path, repo):
    def creds(ctx: StepContext) -> None:
        assert ctx.with_ == {"role-to-assume": "arn:role", "aws-region": "us-east-1", "n": "0"}
        ctx.set_env("AWS_REGION_SET", ctx.with_["aws-region"])

    def fail(ctx: StepContext) -> None:
        raise ActionFailed("nope")

    stand_ins = {"aws-actions/configure-aws-credentials": creds, "x/broken": fail}
    run = go(tmp_path, repo, """
        on: push
        env:
          AWS_REGION: us-east-1
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - uses: aws-actions/configure-aws-credentials@v4
                with:
                  role-to-assume: ${{ vars.ROLE }}
                  aws-region: ${{ env.AWS_REGION }}
                  n: 0
              - run: echo "$AWS_REGION_SET"
              - uses: x/broken@v1
              - if: failure()
                run: echo handled
    """, vars={"ROLE": "arn:role"}, actions=stand_ins)  # fmt: skip
    j = run.job("j")
    assert (
        j.steps[1].stdout == "us-east-1\n" and j.steps[2].stderr == "Error: nope" and j.steps[3].stdout == "handled\n"
    )
    assert j.result == "failure"


def test_secrets_are_masked_and_never_leave_in_outputs(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          j:
            runs-on: ubuntu-latest
            environment: production
            outputs:
              leaked: ${{ steps.s.outputs.k }}
              fine: ${{ steps.s.outputs.ok }}
            steps:
              - id: s
                env:
                  KEY: ${{ secrets.API_KEY }}
                  NONE: ${{ secrets.MISSING }}
                run: |
                  echo "key=$KEY" ; echo "key=$KEY" >&2
                  echo "k=$KEY" >> "$GITHUB_OUTPUT" ; echo "ok=yes" >> "$GITHUB_OUTPUT"
                  echo "::add-mask::runtime-value"
                  echo "runtime-value [$NONE]"
                  echo "summary $KEY" >> "$GITHUB_STEP_SUMMARY"
    """, secrets={"API_KEY": "s3cr3t-value"})  # fmt: skip
    j = run.job("j")
    assert j.steps[0].stdout.splitlines() == ["key=***", "::add-mask::***", "*** []"]
    assert j.steps[0].stderr == "key=***\n" and "s3cr3t" not in run.log and "runtime-value" not in run.log
    assert j.outputs == {"fine": "yes"} and "Skip output 'leaked'" in run.log
    assert run.summary("j") == "summary ***\n" and j.environment == "production"


def test_fork_pull_requests_get_no_secrets(tmp_path, repo):
    text = """
        on: pull_request
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - run: echo "[${{ secrets.API_KEY }}] ${{ secrets.GITHUB_TOKEN != '' }}"
    """
    run = go(tmp_path, repo, text, pr_event(repo, fork=True), secrets={"API_KEY": "k"})
    assert run.job("j").steps[0].stdout == "[] true\n"


def test_step_timeout_kills_the_process_group(tmp_path, repo):
    run = go(tmp_path, repo, """
        on: push
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - run: |
                  sleep 30 &
                  echo $! > "$RUNNER_TEMP/child"
                  sleep 30
    """, step_timeout=1)  # fmt: skip
    s = run.job("j").steps[0]
    assert s.outcome == "failure" and "step_timeout" in s.stderr
    child = Path("/proc", (run.job("j").workspace.parent / "temp" / "child").read_text().strip(), "stat")
    time.sleep(0.2)
    assert not child.exists() or child.read_text().split()[2] == "Z"  # gone (or a zombie nobody reaped yet)


def test_workflow_dispatch_inputs_defaults_and_overrides(tmp_path, repo):
    text = """
        on:
          workflow_dispatch:
            inputs:
              dry-run:
                type: boolean
                default: true
        jobs:
          j:
            runs-on: ubuntu-latest
            steps:
              - name: Install
                run: exit 1
              - env:
                  DRY_RUN: ${{ inputs.dry-run }}
                run: echo "$DRY_RUN ${{ github.event.inputs.dry-run }}"
    """
    sha = git(repo, "rev-parse", "HEAD")
    run = go(tmp_path, repo, text, Event("workflow_dispatch", {}, sha), overrides={"Install": "echo replaced"})
    assert run.job("j").steps[1].stdout == "true true\n" and "replaced by the test's override" in run.log
    run = go(tmp_path, repo, text, Event("schedule", {}, sha), overrides={"Install": "true"})
    assert run.job("j").steps[1].stdout == " \n"  # no inputs outside workflow_dispatch
    with pytest.raises(HarnessError, match="overrides name no `run:` step"):
        go(tmp_path, repo, text, Event("schedule", {}, sha), overrides={"Instal": "true"})
