"""A local runner of GitHub Actions workflows, for journey tests of the shipped workflows (examples/ci/github).

`run_workflow` runs every job of a workflow file in topological order of `needs`, each in a fresh, empty workspace
(a fresh runner), executing each `run:` script exactly as written (after `${{ }}` interpolation, like GitHub) with
the workflow's environment, and standing in for each `uses:` action with a Python callable
(`actions={"owner/name": fn}`; defaults below for checkout, setup-python, upload-artifact and the sticky PR comment).
`triggers` evaluates a workflow's `on:` against an event and its changed files.

Semantics follow GitHub's documentation (expressions, contexts, workflow commands, workflow syntax, GITHUB_TOKEN):

- expressions: literals, `! == != < <= > >= && ||` (JS-like operand values), `.`/`[]` deref, `*` object filters,
  loose equality with coercion to numbers, case-insensitive string compare, the documented functions
  (hashFiles: sha256 over each matched file's sha256 digest, files in sorted path order: the runner uses the
  globber's order);
- `if:` without a status function gets an implicit `success() &&`; for jobs, success()/failure() look at every
  ancestor in `needs` (transitively), so a skipped ancestor skips its dependents unless their `if` says otherwise;
- env: workflow < job < GITHUB_ENV < step; GITHUB_* and RUNNER_* cannot be overridden through GITHUB_ENV;
- GITHUB_OUTPUT / GITHUB_ENV with `name=value` and `name<<DELIMITER` forms; GITHUB_PATH prepends (last first);
  GITHUB_STEP_SUMMARY per step, collected per job;
- shells: unspecified → `bash -e {0}`, `bash` → `bash --noprofile --norc -eo pipefail {0}`, `sh -e {0}`,
  `python {0}`, or a custom command with `{0}`;
- secrets are masked (`***`) in stored output (also values registered with `::add-mask::`); job outputs that
  contain a secret are dropped (GitHub skips them); a pull_request from a fork gets no secrets but GITHUB_TOKEN
  and a read-only token whatever `permissions:` says.

Not implemented: matrix/strategy (the contexts are empty), reusable workflows (`jobs.<id>.uses`), services and
containers, composite actions, `timeout-minutes` (accepted, ignored: `step_timeout` bounds each step),
`concurrency` and `runs-on` (accepted, ignored), cancellation (cancelled() is always false), schedule cron matching.

`overrides={"step name": "script"}` replaces a `run:` step's script (e.g. `pip install` of an unpublished
package, which needs the network). Journey tests must only use it for set-up steps, never for a step under test.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# ----------------------------------------------------------------------------------------------------------- errors


class HarnessError(Exception):
    """Misuse of the harness: an unknown action, a workflow it cannot run."""


class ExpressionError(HarnessError):
    """An expression the harness cannot parse or evaluate (unsupported syntax, unknown function or context)."""


class ActionFailed(Exception):
    """Raised by an action stand-in to fail its step, like an action's `core.setFailed(why)`."""


# ------------------------------------------------------------------------------------------ expression values

NUMBER = (int, float)


class _Filtered(list):
    """The result of a `*` object filter: further derefs apply to each element."""


def _is_num(v: Any) -> bool:
    return isinstance(v, NUMBER) and not isinstance(v, bool)


def num_str(x: float) -> str:
    """A number as GitHub prints it (JS-like: 3 not 3.0)."""
    if isinstance(x, int):
        return str(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == int(x) and abs(x) < 1e21:
        return str(int(x))
    return repr(x)


def to_str(v: Any) -> str:
    """GitHub's string coercion: null → '', booleans → 'true'/'false', objects → 'Object', arrays → 'Array'."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if _is_num(v):
        return num_str(v)
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return "Array"
    return "Object"


_NUM_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def to_num(v: Any) -> float:
    """GitHub's number coercion: null 0, true 1, '' 0, a JSON/hex/octal number string, anything else NaN."""
    if v is None:
        return 0.0
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if _is_num(v):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if s == "":
            return 0.0
        if _NUM_RE.fullmatch(s):
            return float(s)
        sign, body = (-1.0, s[1:]) if s[:1] == "-" else (1.0, s.lstrip("+"))
        with contextlib.suppress(ValueError):
            if body[:2].lower() == "0x":
                return sign * int(body[2:], 16)
            if body[:2].lower() == "0o":
                return sign * int(body[2:], 8)
        if body == "Infinity":
            return sign * math.inf
    return math.nan


def truthy(v: Any) -> bool:
    """Falsy: false, 0, -0, NaN, '', null. Everything else (arrays and objects included) is truthy."""
    if v is None or v is False:
        return False
    if _is_num(v):
        return not (v == 0 or math.isnan(v))
    if isinstance(v, str):
        return v != ""
    return True


def loose_eq(a: Any, b: Any) -> bool:
    """`==`: same kinds compare directly (strings case-insensitively, objects by identity); else as numbers."""
    if a is None and b is None:
        return True
    if isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    if isinstance(a, bool) and isinstance(b, bool):
        return a == b
    if _is_num(a) and _is_num(b):
        return float(a) == float(b)
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return a is b
    return to_num(a) == to_num(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if isinstance(a, (dict, list)) or isinstance(b, (dict, list)):
        return False
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.upper()
        y: Any = b.upper()
    elif _is_num(a) and _is_num(b):
        x, y = float(a), float(b)
    else:
        x, y = to_num(a), to_num(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]


def _json_ready(v: Any) -> Any:
    if isinstance(v, float) and v == int(v) and not math.isinf(v):
        return int(v)
    if isinstance(v, dict):
        return {k: _json_ready(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_json_ready(x) for x in v]
    return v


# ------------------------------------------------------------------------------------------------- tokenizer

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>-?(?:0[xX][0-9a-fA-F]+|0[oO][0-7]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?))
  | (?P<str>'(?:[^']|'')*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[<>!()\[\].,*])
    """,
    re.VERBOSE,
)


def _tokenize(src: str) -> list[tuple[str, Any]]:
    toks: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(src):
        m = _TOKEN_RE.match(src, pos)
        if not m:
            hint = " (strings take single quotes)" if src[pos] == '"' else ""
            raise ExpressionError(f"unsupported expression syntax at {src[pos:]!r} in {src!r}{hint}")
        pos = m.end()
        kind = m.lastgroup
        text = m.group()
        if kind == "ws":
            continue
        if kind == "num":
            toks.append(("lit", to_num(text)))
        elif kind == "str":
            toks.append(("lit", text[1:-1].replace("''", "'")))
        elif kind == "ident":
            kw = {"true": True, "false": False, "null": None, "NaN": math.nan, "Infinity": math.inf}
            toks.append(("lit", kw[text]) if text in kw else ("ident", text))
        else:
            toks.append(("op", text))
    toks.append(("end", None))
    return toks


# ---------------------------------------------------------------------------------------------------- parser

CONTEXTS = frozenset(
    ["github", "env", "vars", "secrets", "inputs", "steps", "needs", "job", "jobs", "runner", "strategy", "matrix"]
)
FUNCTIONS: dict[str, tuple[int, int]] = {  # name (lower) → (min args, max args)
    "contains": (2, 2),
    "startswith": (2, 2),
    "endswith": (2, 2),
    "format": (1, 99),
    "join": (1, 2),
    "tojson": (1, 1),
    "fromjson": (1, 1),
    "hashfiles": (1, 99),
    "success": (0, 0),
    "failure": (0, 0),
    "always": (0, 0),
    "cancelled": (0, 0),
}
STATUS_FUNCTIONS = {"success", "failure", "always", "cancelled"}

Node = tuple  # ("lit", v) ("ctx", name) ("prop", obj, name) ("index", obj, node) ("star", obj) ("call", name, args)
# ("not", node) ("and", l, r) ("or", l, r) ("cmp", op, l, r)


class _Parser:
    def __init__(self, src: str) -> None:
        self.src = src
        self.toks = _tokenize(src)
        self.i = 0

    def peek(self) -> tuple[str, Any]:
        return self.toks[self.i]

    def take(self) -> tuple[str, Any]:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def accept(self, op: str) -> bool:
        if self.peek() == ("op", op):
            self.i += 1
            return True
        return False

    def expect(self, op: str) -> None:
        if not self.accept(op):
            raise ExpressionError(f"expected {op!r} at token {self.peek()[1]!r} in {self.src!r}")

    def parse(self) -> Node:
        node = self.or_()
        if self.peek()[0] != "end":
            raise ExpressionError(f"unexpected {self.peek()[1]!r} in {self.src!r}")
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.accept("||"):
            node = ("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.eq()
        while self.accept("&&"):
            node = ("and", node, self.eq())
        return node

    def eq(self) -> Node:
        node = self.cmp()
        while self.peek() in (("op", "=="), ("op", "!=")):
            node = ("cmp", self.take()[1], node, self.cmp())
        return node

    def cmp(self) -> Node:
        node = self.unary()
        while self.peek() in (("op", "<"), ("op", "<="), ("op", ">"), ("op", ">=")):
            node = ("cmp", self.take()[1], node, self.unary())
        return node

    def unary(self) -> Node:
        if self.accept("!"):
            return ("not", self.unary())
        return self.postfix()

    def postfix(self) -> Node:
        node = self.primary()
        while True:
            if self.accept("."):
                kind, val = self.take()
                if (kind, val) == ("op", "*"):
                    node = ("star", node)
                elif kind == "ident":
                    node = ("prop", node, val)
                elif kind == "lit" and isinstance(val, (bool, type(None))):  # `a.true`, `a.null`: names too
                    node = ("prop", node, to_str(val))
                else:
                    raise ExpressionError(f"expected a property name after '.' in {self.src!r}")
            elif self.accept("["):
                if self.accept("*"):
                    node = ("star", node)
                else:
                    node = ("index", node, self.or_())
                self.expect("]")
            else:
                return node

    def primary(self) -> Node:
        kind, val = self.take()
        if kind == "lit":
            return ("lit", val)
        if (kind, val) == ("op", "("):
            node = self.or_()
            self.expect(")")
            return node
        if kind == "ident":
            if self.accept("("):
                name = val.lower()
                if name not in FUNCTIONS:
                    raise ExpressionError(f"unknown function {val}() in {self.src!r}")
                args: list[Node] = []
                if not self.accept(")"):
                    args.append(self.or_())
                    while self.accept(","):
                        args.append(self.or_())
                    self.expect(")")
                lo, hi = FUNCTIONS[name]
                if not lo <= len(args) <= hi:
                    raise ExpressionError(f"{val}() takes {lo}..{hi} arguments, got {len(args)} in {self.src!r}")
                return ("call", name, args)
            if val.lower() not in CONTEXTS:
                raise ExpressionError(f"unrecognized named-value {val!r} in {self.src!r}")
            return ("ctx", val.lower())
        raise ExpressionError(f"unexpected {val!r} in {self.src!r}")


_PARSED: dict[str, Node] = {}


def parse_expression(src: str) -> Node:
    """Parse one expression (the inside of `${{ }}`) into a tree; cached."""
    if src not in _PARSED:
        _PARSED[src] = _Parser(src).parse()
    return _PARSED[src]


def _uses_status(node: Any) -> bool:
    if isinstance(node, tuple):
        if node[0] == "call" and node[1] in STATUS_FUNCTIONS:
            return True
        return any(_uses_status(x) for x in node[1:])
    if isinstance(node, list):
        return any(_uses_status(x) for x in node)
    return False


# ------------------------------------------------------------------------------------------------- evaluator


@dataclass
class ExprContext:
    """What an expression sees: the contexts, the status functions' answers, the workspace for hashFiles."""

    values: dict[str, Any]
    status: dict[str, bool] = field(default_factory=lambda: {"success": True, "failure": False})
    workspace: Path | None = None


def _get(obj: Any, key: Any) -> Any:
    if isinstance(obj, _Filtered):
        out = _Filtered()
        for item in obj:
            v = _get(item, key)
            if v is not None or (isinstance(item, dict) and _has(item, key)):
                out.append(v)
        return out
    if isinstance(obj, dict):
        k = to_str(key)
        if k in obj:
            return obj[k]
        low = k.casefold()
        return next((v for kk, v in obj.items() if str(kk).casefold() == low), None)
    if isinstance(obj, list) and _is_num(key) and not math.isnan(key):
        i = int(key)
        return obj[i] if 0 <= i < len(obj) else None
    return None


def _has(obj: dict, key: Any) -> bool:
    low = to_str(key).casefold()
    return any(str(k).casefold() == low for k in obj)


def _star(obj: Any) -> _Filtered:
    if isinstance(obj, _Filtered):
        out = _Filtered()
        for item in obj:
            out.extend(_star(item))
        return out
    if isinstance(obj, dict):
        return _Filtered(obj.values())
    if isinstance(obj, list):
        return _Filtered(obj)
    return _Filtered()


def _format(fmt: str, args: list[Any]) -> str:
    out, i = [], 0
    while i < len(fmt):
        c = fmt[i]
        if c == "{" and fmt[i : i + 2] == "{{":
            out.append("{")
            i += 2
        elif c == "}" and fmt[i : i + 2] == "}}":
            out.append("}")
            i += 2
        elif c == "{":
            m = re.match(r"\{(\d+)\}", fmt[i:])
            if not m or int(m.group(1)) >= len(args):
                raise ExpressionError(f"format(): invalid format string {fmt!r} for {len(args)} argument(s)")
            out.append(to_str(args[int(m.group(1))]))
            i += m.end()
        elif c == "}":
            raise ExpressionError(f"format(): unbalanced '}}' in {fmt!r}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def evaluate_node(node: Node, ctx: ExprContext) -> Any:
    """Evaluate a parsed expression."""
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "ctx":
        return ctx.values.get(node[1])
    if kind == "prop":
        return _get(evaluate_node(node[1], ctx), node[2])
    if kind == "index":
        return _get(evaluate_node(node[1], ctx), evaluate_node(node[2], ctx))
    if kind == "star":
        return _star(evaluate_node(node[1], ctx))
    if kind == "not":
        return not truthy(evaluate_node(node[1], ctx))
    if kind == "and":
        left = evaluate_node(node[1], ctx)
        return evaluate_node(node[2], ctx) if truthy(left) else left
    if kind == "or":
        left = evaluate_node(node[1], ctx)
        return left if truthy(left) else evaluate_node(node[2], ctx)
    if kind == "cmp":
        a, b = evaluate_node(node[2], ctx), evaluate_node(node[3], ctx)
        if node[1] == "==":
            return loose_eq(a, b)
        if node[1] == "!=":
            return not loose_eq(a, b)
        return _compare(node[1], a, b)
    if kind == "call":
        return _call(node[1], [evaluate_node(a, ctx) for a in node[2]], ctx)
    raise ExpressionError(f"bad node {node!r}")  # pragma: no cover


def _call(name: str, args: list[Any], ctx: ExprContext) -> Any:
    if name == "always":
        return True
    if name == "cancelled":
        return False
    if name in ("success", "failure"):
        return ctx.status[name]
    if name == "contains":
        search, item = args
        if isinstance(search, list):
            return any(loose_eq(x, item) for x in search)
        return to_str(item).casefold() in to_str(search).casefold()
    if name == "startswith":
        return to_str(args[0]).casefold().startswith(to_str(args[1]).casefold())
    if name == "endswith":
        return to_str(args[0]).casefold().endswith(to_str(args[1]).casefold())
    if name == "format":
        return _format(to_str(args[0]), args[1:])
    if name == "join":
        sep = to_str(args[1]) if len(args) > 1 else ","
        return sep.join(to_str(x) for x in args[0]) if isinstance(args[0], list) else to_str(args[0])
    if name == "tojson":
        return json.dumps(_json_ready(args[0]), indent=2)
    if name == "fromjson":
        try:
            return json.loads(to_str(args[0]))
        except json.JSONDecodeError as e:
            raise ExpressionError(f"fromJSON(): not JSON: {to_str(args[0])!r}") from e
    if name == "hashfiles":
        if ctx.workspace is None:
            raise ExpressionError("hashFiles() is only available in steps")
        files = match_files(ctx.workspace, [to_str(a) for a in args])
        if not files:
            return ""
        total = hashlib.sha256()
        for f in files:
            total.update(hashlib.sha256(f.read_bytes()).digest())
        return total.hexdigest()
    raise ExpressionError(f"unknown function {name}()")  # pragma: no cover


def evaluate(src: str, ctx: ExprContext) -> Any:
    """Evaluate one expression string (no `${{ }}`)."""
    return evaluate_node(parse_expression(src), ctx)


def _template_parts(s: str) -> list[str | Node]:
    """Split a string into literal text and parsed `${{ }}` expressions (a `}}` inside quotes does not close)."""
    parts: list[str | Node] = []
    i = 0
    while True:
        j = s.find("${{", i)
        if j < 0:
            if s[i:]:
                parts.append(s[i:])
            return parts
        if s[i:j]:
            parts.append(s[i:j])
        k, quoted = j + 3, False
        while k < len(s):
            if s[k] == "'":
                quoted = not quoted
            elif not quoted and s.startswith("}}", k):
                break
            k += 1
        else:
            raise ExpressionError(f"unclosed '${{{{' in {s!r}")
        parts.append(parse_expression(s[j + 3 : k].strip()))
        i = k + 2


def interpolate(value: Any, ctx: ExprContext) -> Any:
    """Expand `${{ }}` in a string: a string that is one expression gives its value, else text. Non-strings pass."""
    if not isinstance(value, str) or "${{" not in value:
        return value
    parts = _template_parts(value)
    if len(parts) == 1 and isinstance(parts[0], tuple):
        return evaluate_node(parts[0], ctx)
    return "".join(p if isinstance(p, str) else to_str(evaluate_node(p, ctx)) for p in parts)


def yaml_str(v: Any) -> str:
    """A YAML scalar as the string GitHub passes on (true → 'true', 0 → '0', null → '')."""
    return to_str(v)


def condition_node(cond: Any) -> Node:
    """The parsed `if:` (written with or without `${{ }}`), with GitHub's implicit `success() &&`."""
    if cond is None or cond == "":
        return ("call", "success", [])
    src = yaml_str(cond).strip()
    if src.startswith("${{") and src.endswith("}}") and src.count("${{") == 1:
        src = src[3:-2].strip()
    elif "${{" in src:
        raise ExpressionError(f"unsupported `if:` mixing text and ${{{{ }}}}: {src!r}")
    node = parse_expression(src)
    return node if _uses_status(node) else ("and", ("call", "success", []), node)


# ------------------------------------------------------------------------------------------- globs and filters


def glob_regex(pattern: str) -> re.Pattern[str]:
    """GitHub's filter patterns: `*` any run but `/`, `**` anything (`**/` zero or more folders), `?` and `+`
    zero-or-one / one-or-more of the preceding character, `[...]` a class, `\\` escapes."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c in "?+" and out:
            out.append(c)
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
            else:
                out.append("[" + pattern[i + 1 : j].replace("\\", "\\\\") + "]")
                i = j + 1
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out))


def filter_matches(patterns: Iterable[str], name: str) -> bool:
    """Whether `name` is included by an ordered pattern list: the last matching pattern wins (`!` excludes)."""
    included = False
    for p in patterns:
        negated = p.startswith("!")
        if glob_regex(p[1:] if negated else p).fullmatch(name):
            included = not negated
    return included


def match_files(root: Path, patterns: list[str]) -> list[Path]:
    """Files under `root` matched by glob patterns (relative to root, or absolute; `!` excludes), sorted."""
    lines = [p.strip() for pat in patterns for p in pat.splitlines() if p.strip()]
    found: dict[Path, None] = {}
    for pat in lines:
        negated = pat.startswith("!")
        pat = pat[1:] if negated else pat
        base = Path(pat) if Path(pat).is_absolute() else root / pat
        if not any(ch in pat for ch in "*?[") and base.exists():
            hits = [base] if base.is_file() else [p for p in base.rglob("*") if p.is_file()]
        else:
            rx = glob_regex(str(base).replace(os.sep, "/"))
            hits = [p for p in root.rglob("*") if p.is_file() and rx.fullmatch(str(p).replace(os.sep, "/"))]
        for h in hits:
            if negated:
                found.pop(h, None)
            else:
                found[h] = None
    return sorted(found)


# -------------------------------------------------------------------------------------------------- data types


@dataclass
class Event:
    """What triggered the run."""

    name: str
    payload: dict
    sha: str
    ref: str = "refs/heads/main"
    base_ref: str = ""
    head_ref: str = ""
    inputs: dict = field(default_factory=dict)


@dataclass
class StepResult:
    """One step: outcome before continue-on-error, conclusion after."""

    id: str | None
    name: str
    outcome: str  # success | failure | skipped
    conclusion: str
    outputs: dict[str, str] = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None


@dataclass
class JobResult:
    """One job's result ('success' | 'failure' | 'skipped' | 'cancelled'), outputs, steps and set-up."""

    id: str
    result: str
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    environment: str | None = None
    permissions: Any = None  # as declared on the job (None: not declared)
    token_permissions: dict[str, str] = field(default_factory=dict)  # what GITHUB_TOKEN may do in this job
    workspace: Path | None = None
    summary: str = ""

    def step(self, name_or_id: str) -> StepResult:
        """The step with this id or name."""
        for s in self.steps:
            if name_or_id in (s.id, s.name):
                return s
        raise KeyError(f"no step {name_or_id!r} in job {self.id!r}: {[s.name for s in self.steps]}")


@dataclass
class Run:
    """A whole workflow run: its inputs, per-job results, artifacts and log."""

    workflow: dict
    event: Event
    repo: Path
    workdir: Path
    vars: dict[str, str]
    secrets: dict[str, str]
    repository: str
    jobs: dict[str, JobResult] = field(default_factory=dict)
    log_lines: list[str] = field(default_factory=list)
    masks: list[str] = field(default_factory=list)

    @property
    def artifacts(self) -> Path:
        """run.artifacts/<name>/... as uploaded by actions/upload-artifact."""
        return self.workdir / "artifacts"

    @property
    def comments(self) -> Path:
        """<header>.md per sticky PR comment."""
        return self.workdir / "comments"

    @property
    def is_fork_pr(self) -> bool:
        pr = self.event.payload.get("pull_request") or {}
        return self.event.name.startswith("pull_request") and bool(
            ((pr.get("head") or {}).get("repo") or {}).get("fork")
        )

    @property
    def log(self) -> str:
        return "\n".join(self.log_lines)

    def job(self, job_id: str) -> JobResult:
        if job_id not in self.jobs:
            raise KeyError(f"no job {job_id!r} in this run: {list(self.jobs)}")
        return self.jobs[job_id]

    def summary(self, job_id: str) -> str:
        """The job's GITHUB_STEP_SUMMARY text (all its steps, in order)."""
        return self.job(job_id).summary

    def mask(self, text: str) -> str:
        """Replace every secret (and ::add-mask:: value) with ***, longest first."""
        for m in sorted(self.masks, key=len, reverse=True):
            text = text.replace(m, "***")
        return text

    def say(self, line: str) -> None:
        self.log_lines.append(self.mask(line))


@dataclass
class StepContext:
    """What an action stand-in gets."""

    job_id: str
    step: dict
    with_: dict[str, str]
    env: dict[str, str]
    workspace: Path
    run: Run
    permissions: dict[str, str] = field(default_factory=dict)  # the job's GITHUB_TOKEN permissions
    _env_updates: dict[str, str] = field(default_factory=dict)
    _path_updates: list[str] = field(default_factory=list)

    def set_env(self, name: str, value: str) -> None:
        """Like writing to GITHUB_ENV: later steps of the job see it."""
        self._env_updates[name] = value

    def add_path(self, directory: str | Path) -> None:
        """Like writing to GITHUB_PATH: prepended to PATH for later steps."""
        self._path_updates.append(str(directory))

    def can_write(self, scope: str) -> bool:
        return self.permissions.get(scope) == "write"

    def log(self, line: str) -> None:
        self.run.say(f"  [{self.step.get('uses')}] {line}")


Action = Callable[[StepContext], "dict | None"]

# ---------------------------------------------------------------------------------------------- default actions


def _git(*args: str, cwd: Path) -> str:
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise ActionFailed(f"git {' '.join(args)}: {p.stderr.strip()}")
    return p.stdout.strip()


def checkout(ctx: StepContext) -> dict[str, str]:
    """actions/checkout: fetch `repo` into the workspace (or `with.path`) and check out `with.ref` or github.sha.
    fetch-depth 0 fetches every branch (as origin/*) and tag, like the real action; otherwise only that commit
    at that depth. A branch ref gets a local branch, anything else a detached HEAD."""
    run = ctx.run
    dest = ctx.workspace / ctx.with_.get("path", "")
    dest.mkdir(parents=True, exist_ok=True)
    depth = int(ctx.with_.get("fetch-depth") or 1)
    ref = ctx.with_.get("ref") or ""
    upload = "--upload-pack=git -c uploadpack.allowAnySHA1InWant=true upload-pack"
    _git("init", "-q", str(dest), cwd=ctx.workspace)
    _git("remote", "add", "origin", str(run.repo.resolve()), cwd=dest)
    if ref:
        target = ref
        if not re.fullmatch(r"[0-9a-f]{7,40}", ref):
            name = ref.removeprefix("refs/heads/")
            heads = _git("ls-remote", "--heads", "--tags", "origin", cwd=dest).split("\n")
            if any(line.endswith(f"\trefs/heads/{name}") for line in heads):
                target = f"refs/heads/{name}"
            elif any(line.endswith(f"\trefs/tags/{ref.removeprefix('refs/tags/')}") for line in heads):
                target = f"refs/tags/{ref.removeprefix('refs/tags/')}"
            else:
                raise ActionFailed(f"A branch or tag with the name '{ref}' could not be found")
        sha = _git("rev-parse", f"{target}^{{commit}}", cwd=run.repo)
    else:
        target, sha = run.event.ref, run.event.sha
    if depth == 0:
        _git(
            "fetch",
            "-q",
            upload,
            "--prune",
            "--no-recurse-submodules",
            "origin",
            "+refs/heads/*:refs/remotes/origin/*",
            "+refs/tags/*:refs/tags/*",
            cwd=dest,
        )
        with contextlib.suppress(ActionFailed):
            _git("cat-file", "-e", f"{sha}^{{commit}}", cwd=dest)
            depth = -1  # have it
        if depth == 0:
            _git("fetch", "-q", upload, "origin", sha, cwd=dest)
    else:
        _git("fetch", "-q", upload, "--no-tags", f"--depth={depth}", "origin", sha, cwd=dest)
    if target.startswith("refs/heads/"):
        _git("checkout", "-q", "--force", "-B", target.removeprefix("refs/heads/"), sha, cwd=dest)
    else:
        _git("checkout", "-q", "--force", "--detach", sha, cwd=dest)
    return {"ref": target, "commit": sha}


def setup_python(ctx: StepContext) -> dict[str, str]:
    """actions/setup-python: puts a `python`/`python3` that runs the harness's interpreter first on PATH."""
    shim = ctx.run.workdir / "toolcache" / "python" / "bin"
    shim.mkdir(parents=True, exist_ok=True)
    for name in ("python", "python3"):
        exe = shim / name
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        exe.chmod(0o755)
    ctx.add_path(shim)
    return {"python-version": ".".join(map(str, sys.version_info[:3])), "python-path": str(shim / "python")}


def upload_artifact(ctx: StepContext) -> dict[str, str]:
    """actions/upload-artifact (v4): copy `with.path` (newline-separated, globs, `!` excludes) into
    run.artifacts/<name>/, relative to the search paths' least common ancestor; a second upload of the same name
    fails unless `overwrite: true`; `if-no-files-found` warn (default) / error / ignore."""
    name = ctx.with_.get("name") or "artifact"
    lines = [p.strip() for p in ctx.with_.get("path", "").splitlines() if p.strip()]
    if not lines:
        raise ActionFailed("Input required and not supplied: path")
    files = match_files(ctx.workspace, lines)
    if ctx.with_.get("include-hidden-files") != "true":
        files = [f for f in files if not any(part.startswith(".") for part in f.relative_to(ctx.workspace).parts)]
    if not files:
        mode = ctx.with_.get("if-no-files-found") or "warn"
        msg = f"No files were found with the provided path: {chr(10).join(lines)}. No artifacts will be uploaded."
        if mode == "error":
            raise ActionFailed(msg)
        if mode == "warn":
            ctx.log(f"Warning: {msg}")
        return {}
    dest = ctx.run.artifacts / name
    if dest.exists():
        if ctx.with_.get("overwrite") != "true":
            raise ActionFailed(f"Failed to CreateArtifact: an artifact with this name already exists: {name}")
        shutil.rmtree(dest)
    roots = []  # the search paths: a literal path, or a pattern's folder before its first wildcard
    for line in lines:
        if line.startswith("!"):
            continue
        literal = re.split(r"[*?\[]", line)[0]
        p = ctx.workspace / literal
        if literal != line:
            p = ctx.workspace / literal.rsplit("/", 1)[0] if "/" in literal else ctx.workspace
        roots.append(p if p.is_dir() else p.parent)
    root = Path(os.path.commonpath([str(r) for r in roots]))
    for f in files:
        rel = f.relative_to(root) if f.is_relative_to(root) else Path(f.name)
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f, dest / rel)
    ctx.log(f"uploaded {len(files)} file(s) as artifact {name!r}")
    return {"artifact-id": str(abs(hash(name)) % 10**8), "artifact-url": f"file://{dest}"}


def sticky_comment(ctx: StepContext) -> dict[str, str]:
    """marocchino/sticky-pull-request-comment: write run.comments/<header>.md from `with.path` or `with.message`
    (append: true appends). Fails like GitHub when the token cannot write pull requests (a fork's PR: read-only)."""
    number = ctx.with_.get("number") or to_str(_get(ctx.run.event.payload.get("pull_request"), "number"))
    if not number:
        ctx.log("no pull request numbers given: skip step")
        return {}
    if not ctx.can_write("pull-requests"):
        raise ActionFailed("Resource not accessible by integration")
    if ctx.with_.get("path"):
        src = ctx.workspace / ctx.with_["path"]
        if not src.is_file():
            raise ActionFailed(f"ENOENT: no such file or directory, open '{src}'")
        body = src.read_text()
    elif ctx.with_.get("message"):
        body = ctx.with_["message"]
    else:
        raise ActionFailed("Either message or path input is required")
    ctx.run.comments.mkdir(parents=True, exist_ok=True)
    out = ctx.run.comments / f"{ctx.with_.get('header', '')}.md"
    if ctx.with_.get("append") == "true" and out.exists():
        body = out.read_text() + "\n" + body
    out.write_text(body)
    ctx.log(f"comment {out.name} on pull request #{number}")
    return {"created_comment_id": "1"}


DEFAULT_ACTIONS: dict[str, Action] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "actions/upload-artifact": upload_artifact,
    "marocchino/sticky-pull-request-comment": sticky_comment,
}

# -------------------------------------------------------------------------------------------------- triggers


def _on(wf: dict) -> dict:
    on = wf.get("on", wf.get(True))  # YAML 1.1 reads a bare `on:` key as true
    if isinstance(on, str):
        return {on: {}}
    if isinstance(on, list):
        return {e: {} for e in on}
    return {k: (v or {}) for k, v in (on or {}).items()}


def _ref_filter(cfg: dict, kind: str, name: str) -> bool:
    if kind in cfg:
        return filter_matches(cfg[kind], name)
    if f"{kind}-ignore" in cfg:
        return not filter_matches(cfg[f"{kind}-ignore"], name)
    return True


def _paths_filter(cfg: dict, changed: list[str]) -> bool:
    if "paths" in cfg:
        return any(filter_matches(cfg["paths"], f) for f in changed)
    if "paths-ignore" in cfg:
        return not all(filter_matches(cfg["paths-ignore"], f) for f in changed)
    return True


def triggers(path: Path, event: Event, changed_files: list[str]) -> bool:
    """Whether the workflow's `on:` runs for this event: pull_request types (default opened/synchronize/reopened),
    branches (the base branch) and paths; push branches/tags and paths (not evaluated for tags);
    workflow_dispatch; schedule (cron not matched)."""
    on = _on(yaml.safe_load(Path(path).read_text()))
    if event.name not in on:
        return False
    cfg = on[event.name]
    if event.name in ("pull_request", "pull_request_target"):
        action = event.payload.get("action", "opened")
        if action not in cfg.get("types", ["opened", "synchronize", "reopened"]):
            return False
        base = event.base_ref or to_str(_get(_get(event.payload.get("pull_request"), "base"), "ref"))
        return _ref_filter(cfg, "branches", base) and _paths_filter(cfg, changed_files)
    if event.name == "push":
        if event.ref.startswith("refs/tags/"):
            if not any(k in cfg for k in ("tags", "tags-ignore")) and any(
                k in cfg for k in ("branches", "branches-ignore")
            ):
                return False
            return _ref_filter(cfg, "tags", event.ref.removeprefix("refs/tags/"))
        if not any(k in cfg for k in ("branches", "branches-ignore")) and any(
            k in cfg for k in ("tags", "tags-ignore")
        ):
            return False
        return _ref_filter(cfg, "branches", event.ref.removeprefix("refs/heads/")) and _paths_filter(cfg, changed_files)
    return True


# ---------------------------------------------------------------------------------------------------- runner

SCOPES = [
    "actions",
    "attestations",
    "checks",
    "contents",
    "deployments",
    "discussions",
    "id-token",
    "issues",
    "models",
    "packages",
    "pages",
    "pull-requests",
    "repository-projects",
    "security-events",
    "statuses",
]
DEFAULT_SHELL = "bash -e {0}"
SHELLS = {"bash": "bash --noprofile --norc -eo pipefail {0}", "sh": "sh -e {0}", "python": "python {0}"}


def token_permissions(declared: Any, fork_pr: bool) -> dict[str, str]:
    """GITHUB_TOKEN permissions: none declared → permissive default (write), `read-all`/`write-all`, or a map
    (unlisted scopes none). A PR from a fork caps everything at read (id-token none)."""
    if declared is None or declared == "write-all":
        perms = dict.fromkeys(SCOPES, "write")
        perms["id-token"] = "none" if declared is None else "write"
    elif declared == "read-all":
        perms = dict.fromkeys(SCOPES, "read")
    elif isinstance(declared, dict):
        perms = {s: str(declared.get(s, "none")) for s in SCOPES}
    else:
        raise HarnessError(f"unsupported permissions: {declared!r}")
    perms["metadata"] = "read"
    if fork_pr:
        perms = {s: ("read" if v == "write" else v) for s, v in perms.items()}
        perms["id-token"] = "none"
    return perms


def parse_file_command(text: str, what: str) -> dict[str, str]:
    """Parse a GITHUB_OUTPUT / GITHUB_ENV file: `name=value` lines and `name<<DELIMITER` … `DELIMITER` blocks."""
    out: dict[str, str] = {}
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line:
            continue
        eq, heredoc = line.find("="), line.find("<<")
        if eq >= 0 and (heredoc < 0 or eq < heredoc):
            out[line[:eq]] = line[eq + 1 :]
        elif heredoc >= 0:
            name, delim = line[:heredoc], line[heredoc + 2 :]
            if not name or not delim:
                raise ActionFailed(f"Unable to process file command '{what}' successfully: invalid format {line!r}")
            body: list[str] = []
            while i < len(lines) and lines[i] != delim:
                body.append(lines[i])
                i += 1
            if i >= len(lines):
                raise ActionFailed(
                    f"Unable to process file command '{what}' successfully: matching delimiter not found {delim!r}"
                )
            i += 1
            out[name] = "\n".join(body)
        else:
            raise ActionFailed(f"Unable to process file command '{what}' successfully: invalid format {line!r}")
    return out


def _walk_strings(node: Any) -> Iterable[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk_strings(v)


def _check_expressions(wf: dict) -> None:
    """Parse every `${{ }}` and `if:` up front, so unsupported syntax is an error even on a branch not taken."""
    for s in _walk_strings({k: v for k, v in wf.items() if k not in ("on", True)}):
        if "${{" in s:
            _template_parts(s)
    for job in (wf.get("jobs") or {}).values():
        for cond in [job.get("if")] + [st.get("if") for st in job.get("steps") or []]:
            if cond is not None:
                condition_node(cond)


def _job_order(jobs: dict) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(j: str, chain: tuple[str, ...]) -> None:
        if state.get(j) == 2:
            return
        if state.get(j) == 1:
            raise HarnessError(f"a cycle in needs: {' -> '.join((*chain, j))}")
        state[j] = 1
        for n in _needs(jobs[j]):
            if n not in jobs:
                raise HarnessError(f"job {j!r} needs unknown job {n!r}")
            visit(n, (*chain, j))
        state[j] = 2
        order.append(j)

    for j in jobs:
        visit(j, ())
    return order


def _needs(job: dict) -> list[str]:
    n = job.get("needs") or []
    return [n] if isinstance(n, str) else list(n)


def _ancestors(jobs: dict, job_id: str) -> set[str]:
    seen: set[str] = set()
    todo = list(_needs(jobs[job_id]))
    while todo:
        j = todo.pop()
        if j not in seen:
            seen.add(j)
            todo.extend(_needs(jobs[j]))
    return seen


def _action_key(uses: str) -> str:
    return uses if uses.startswith(("docker://", "./")) else uses.split("@", 1)[0]


def run_workflow(
    path: Path,
    event: Event,
    repo: Path,
    *,
    actions: dict[str, Action] | None = None,
    vars: dict | None = None,
    secrets: dict | None = None,
    base_env: dict | None = None,
    workdir: Path,
    step_timeout: float = 900,
    overrides: dict[str, str] | None = None,
    repository: str = "octo-org/selfhost-specs",
    actor: str = "octocat",
) -> Run:
    """Run every job of the workflow at `path` for `event` (whether `on:` matches is `triggers`' business).

    Returns normally whatever the jobs' results; raises HarnessError for misuse (an action with no stand-in, an
    unsupported expression, a `needs` cycle). `overrides` replaces `run:` scripts by step name: set-up steps only.
    """
    wf = yaml.safe_load(Path(path).read_text())
    if not isinstance(wf, dict) or not isinstance(wf.get("jobs"), dict):
        raise HarnessError(f"{path}: not a workflow (no jobs)")
    _check_expressions(wf)
    run_steps = {to_str(st.get("name")) for j in wf["jobs"].values() for st in j.get("steps") or [] if "run" in st}
    unknown = sorted(set(overrides or {}) - run_steps)
    if unknown:
        raise HarnessError(f"overrides name no `run:` step of {path}: {unknown} (run steps: {sorted(run_steps)})")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    run = Run(
        workflow=wf,
        event=copy.deepcopy(event),
        repo=Path(repo),
        workdir=workdir,
        vars={k: yaml_str(v) for k, v in (vars or {}).items()},
        secrets={k: yaml_str(v) for k, v in (secrets or {}).items()},
        repository=repository,
    )
    token = "ghs_" + hashlib.sha256(str(workdir).encode()).hexdigest()[:36]
    run.secrets.setdefault("GITHUB_TOKEN", token)
    if run.is_fork_pr:  # "secrets are not passed to workflows that are triggered by a pull request from a fork"
        run.secrets = {"GITHUB_TOKEN": run.secrets["GITHUB_TOKEN"]}
    run.masks = [v for v in {*(secrets or {}).values(), token} if isinstance(v, str) and v]
    runner = _Runner(run, {**DEFAULT_ACTIONS, **(actions or {})}, base_env or {}, step_timeout, overrides or {}, actor)
    jobs = wf["jobs"]
    for job_id in _job_order(jobs):
        run.jobs[job_id] = runner.run_job(job_id, jobs[job_id])
    return run


class _Runner:
    """Runs jobs and steps of one Run."""

    def __init__(
        self,
        run: Run,
        actions: dict[str, Action],
        base_env: dict,
        timeout: float,
        overrides: dict[str, str],
        actor: str,
    ) -> None:
        self.run, self.actions, self.timeout, self.overrides = run, actions, timeout, overrides
        self.base_env = {k: yaml_str(v) for k, v in base_env.items()}
        self.base_env.setdefault("PATH", "/usr/bin:/bin")
        wf, ev = run.workflow, run.event
        self.event_path = run.workdir / "event.json"
        self.event_path.write_text(json.dumps(ev.payload, indent=2))
        self.inputs: dict[str, Any] = {}
        if ev.name == "workflow_dispatch":
            decl = (_on(wf).get("workflow_dispatch") or {}).get("inputs") or {}
            for name, spec in decl.items():
                raw = ev.inputs.get(name, (spec or {}).get("default"))
                kind = (spec or {}).get("type", "string")
                if kind == "boolean":
                    raw = raw if isinstance(raw, bool) else to_str(raw).lower() == "true"
                elif kind == "number" and raw is not None:
                    raw = to_num(raw)
                self.inputs[name] = raw
            self.inputs.update({k: v for k, v in ev.inputs.items() if k not in self.inputs})
            ev.payload.setdefault("inputs", {k: to_str(v) for k, v in self.inputs.items()})
        owner = run.repository.split("/")[0]
        self.github: dict[str, Any] = {
            "event_name": ev.name,
            "event": ev.payload,
            "sha": ev.sha,
            "ref": ev.ref,
            "ref_name": re.sub(r"^refs/(heads|tags)/", "", ev.ref),
            "ref_type": "tag" if ev.ref.startswith("refs/tags/") else "branch",
            "base_ref": ev.base_ref,
            "head_ref": ev.head_ref,
            "repository": run.repository,
            "repository_owner": owner,
            "actor": actor,
            "triggering_actor": actor,
            "run_id": "1",
            "run_number": "1",
            "run_attempt": "1",
            "workflow": wf.get("name") or "",
            "server_url": "https://github.com",
            "api_url": "https://api.github.com",
            "event_path": str(self.event_path),
            "token": run.secrets["GITHUB_TOKEN"],
            "retention_days": "90",
        }

    # -------------------------------------------------------------------------------------------------- jobs

    def run_job(self, job_id: str, job: dict) -> JobResult:
        run = self.run
        jobs = run.workflow["jobs"]
        say = run.say
        needs = {n: {"result": run.jobs[n].result, "outputs": run.jobs[n].outputs} for n in _needs(job)}
        ancestors = [run.jobs[a].result for a in _ancestors(jobs, job_id)]
        status = {"success": all(r == "success" for r in ancestors), "failure": any(r == "failure" for r in ancestors)}
        values = {
            "github": {**self.github, "job": job_id},
            "needs": needs,
            "vars": run.vars,
            "inputs": self.inputs,
            "strategy": {},
            "matrix": {},
        }
        declared = job.get("permissions", run.workflow.get("permissions"))
        result = JobResult(
            id=job_id,
            result="skipped",
            permissions=job.get("permissions"),
            token_permissions=token_permissions(declared, run.is_fork_pr),
        )
        say(f"== job {job_id}")
        if not truthy(evaluate_node(condition_node(job.get("if")), ExprContext(values, status))):
            say(f"   skipped (if: {job.get('if', 'success()')})")
            return result
        values["secrets"] = run.secrets
        env_name = job.get("environment")
        if isinstance(env_name, dict):
            env_name = env_name.get("name")
        result.environment = to_str(interpolate(env_name, ExprContext(values))) if env_name is not None else None
        root = run.workdir / "jobs" / job_id
        if root.exists():
            shutil.rmtree(root)
        workspace, temp, files = root / "workspace", root / "temp", root / "files"
        for d in (workspace, temp, files):
            d.mkdir(parents=True)
        result.workspace = workspace
        values["runner"] = {
            "os": "Linux",
            "arch": "X64",
            "name": "harness",
            "temp": str(temp),
            "tool_cache": str(run.workdir / "toolcache"),
            "environment": "github-hosted",
        }
        values["github"]["workspace"] = str(workspace)
        job_env: dict[str, str] = {}
        for layer in (run.workflow.get("env") or {}, job.get("env") or {}):
            ctx = ExprContext({**values, "env": dict(job_env)}, workspace=workspace)
            job_env.update({k: to_str(interpolate(v, ctx)) for k, v in layer.items()})
        defaults = {
            **((run.workflow.get("defaults") or {}).get("run") or {}),
            **((job.get("defaults") or {}).get("run") or {}),
        }
        state = _JobState(
            job_id=job_id,
            job=job,
            values=values,
            job_env=job_env,
            workspace=workspace,
            temp=temp,
            files=files,
            defaults=defaults,
            token=result.token_permissions,
        )
        summaries: list[str] = []
        try:
            for index, step in enumerate(job.get("steps") or []):
                sr = self.run_step(state, index, step)
                result.steps.append(sr)
                summary = files / f"summary_{index}"
                if summary.exists() and summary.read_text():
                    summaries.append(summary.read_text())
        finally:
            state.kill_leftovers()
        result.summary = run.mask("".join(summaries))
        result.result = "failure" if state.failed else "success"
        ctx = ExprContext(
            {**values, "steps": state.steps_ctx, "env": job_env, "job": {"status": result.result}}, workspace=workspace
        )
        for name, expr in (job.get("outputs") or {}).items():
            value = to_str(interpolate(expr, ctx))
            if any(s and s in value for s in run.masks):
                say(f"   Skip output '{name}' since it may contain secret.")
                continue
            result.outputs[name] = value
        say(f"   job {job_id}: {result.result}")
        return result

    # ------------------------------------------------------------------------------------------------- steps

    def run_step(self, st: _JobState, index: int, step: dict) -> StepResult:
        run = self.run
        sid = step.get("id")
        uses = step.get("uses")
        first = (step.get("run") or "").strip().split("\n")[0]
        name = to_str(step.get("name")) if step.get("name") is not None else (f"Run {uses}" if uses else f"Run {first}")
        values = {
            **st.values,
            "steps": st.steps_ctx,
            "job": {"status": "failure" if st.failed else "success"},
            "env": {**st.job_env, **st.github_env},
        }
        status = {"success": not st.failed, "failure": st.failed}
        if not truthy(evaluate_node(condition_node(step.get("if")), ExprContext(values, status, st.workspace))):
            run.say(f"-- {name}: skipped")
            if sid:
                st.steps_ctx[sid] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            return StepResult(sid, name, "skipped", "skipped")
        ctx = ExprContext(values, status, st.workspace)
        step_env = {k: to_str(interpolate(v, ctx)) for k, v in (step.get("env") or {}).items()}
        values["env"] = {**values["env"], **step_env}
        ctx = ExprContext(values, status, st.workspace)
        f_out, f_env, f_path, f_sum = (st.files / f"{kind}_{index}" for kind in ("output", "env", "path", "summary"))
        for f in (f_out, f_env, f_path, f_sum):
            f.write_text("")
        path = os.pathsep.join([*reversed(st.path_prefix), self.base_env["PATH"]])
        github_defaults = {
            "GITHUB_WORKSPACE": str(st.workspace),
            "GITHUB_OUTPUT": str(f_out),
            "GITHUB_ENV": str(f_env),
            "GITHUB_PATH": str(f_path),
            "GITHUB_STEP_SUMMARY": str(f_sum),
            "GITHUB_SHA": run.event.sha,
            "GITHUB_REF": run.event.ref,
            "GITHUB_REF_NAME": self.github["ref_name"],
            "GITHUB_REF_TYPE": self.github["ref_type"],
            "GITHUB_EVENT_NAME": run.event.name,
            "GITHUB_EVENT_PATH": str(self.event_path),
            "GITHUB_REPOSITORY": run.repository,
            "GITHUB_REPOSITORY_OWNER": self.github["repository_owner"],
            "GITHUB_BASE_REF": run.event.base_ref,
            "GITHUB_HEAD_REF": run.event.head_ref,
            "GITHUB_ACTIONS": "true",
            "GITHUB_ACTOR": self.github["actor"],
            "GITHUB_RUN_ID": "1",
            "GITHUB_RUN_NUMBER": "1",
            "GITHUB_RUN_ATTEMPT": "1",
            "GITHUB_JOB": st.job_id,
            "GITHUB_WORKFLOW": self.github["workflow"],
            "GITHUB_SERVER_URL": self.github["server_url"],
            "GITHUB_API_URL": self.github["api_url"],
            "GITHUB_ACTION": sid or f"__run_{index}",
            "RUNNER_TEMP": str(st.temp),
            "RUNNER_OS": "Linux",
            "RUNNER_ARCH": "X64",
            "RUNNER_NAME": "harness",
            "RUNNER_TOOL_CACHE": str(run.workdir / "toolcache"),
            "RUNNER_ENVIRONMENT": "github-hosted",
        }
        env = {
            "HOME": str(run.workdir / "home"),
            "CI": "true",
            **self.base_env,
            **st.job_env,
            **st.github_env,
            **step_env,
            **github_defaults,
            "PATH": path,
        }
        (run.workdir / "home").mkdir(exist_ok=True)
        run.say(f"-- {name}")
        outputs: dict[str, str] = {}
        stdout = stderr = ""
        code: int | None = None
        ok = True
        if "run" in step:
            script = self.overrides.get(name, step["run"])
            if name in self.overrides:
                run.say("   (script replaced by the test's override)")
            script = to_str(interpolate(script, ctx))
            wd = step.get("working-directory", st.defaults.get("working-directory"))
            cwd = st.workspace / to_str(interpolate(wd, ctx)) if wd else st.workspace
            shell = to_str(interpolate(step.get("shell", st.defaults.get("shell")), ctx)) or None
            code, stdout, stderr = self.run_script(st, index, script, shell, cwd, env)
            ok = code == 0
        elif uses:
            key = _action_key(uses)
            if key not in self.actions:
                raise HarnessError(
                    f"no stand-in for action {key!r} (job {st.job_id!r}, step {name!r}): "
                    f"pass run_workflow(..., actions={{{key!r}: fn}})"
                )
            with_ = {k: to_str(interpolate(v, ctx)) for k, v in (step.get("with") or {}).items()}
            sctx = StepContext(
                job_id=st.job_id, step=step, with_=with_, env=env, workspace=st.workspace, run=run, permissions=st.token
            )
            try:
                outputs = {k: to_str(v) for k, v in (self.actions[key](sctx) or {}).items()}
                code = 0
            except ActionFailed as e:
                ok, code, stderr = False, 1, f"Error: {e}"
            st.github_env.update({k: v for k, v in sctx._env_updates.items() if not _protected(k)})
            st.path_prefix.extend(sctx._path_updates)
        else:
            raise HarnessError(f"step {name!r} of job {st.job_id!r} has neither run: nor uses:")
        try:
            outputs.update(parse_file_command(f_out.read_text(), "output"))
            for k, v in parse_file_command(f_env.read_text(), "env").items():
                if _protected(k):
                    run.say(f"   Warning: Can't overwrite {k} through GITHUB_ENV")
                else:
                    st.github_env[k] = v
        except ActionFailed as e:
            ok, stderr = False, stderr + f"\nError: {e}"
        st.path_prefix.extend(line.strip() for line in f_path.read_text().splitlines() if line.strip())
        stdout, stderr = run.mask(stdout), run.mask(stderr)
        for text in (stdout, stderr):
            for line in text.splitlines():
                run.say(f"   {line}")
        outcome = "success" if ok else "failure"
        coe = truthy(interpolate(step.get("continue-on-error", False), ctx))
        conclusion = "success" if coe else outcome
        if conclusion == "failure":
            st.failed = True
        run.say(f"   {outcome}" + (" (continue-on-error)" if coe and not ok else "") + f" exit={code}")
        if sid:
            st.steps_ctx[sid] = {"outputs": outputs, "outcome": outcome, "conclusion": conclusion}
        return StepResult(sid, name, outcome, conclusion, outputs, stdout, stderr, code)

    def run_script(
        self, st: _JobState, index: int, script: str, shell: str | None, cwd: Path, env: dict[str, str]
    ) -> tuple[int, str, str]:
        """Write the script to a file and run it with the step's shell; kill its process group on timeout."""
        template = SHELLS.get(shell or "", shell) if shell else DEFAULT_SHELL
        ext = ".py" if shell == "python" else ".sh"
        script_file = st.temp / f"step_{index}{ext}"
        script_file.write_text(script)
        argv = [a.replace("{0}", str(script_file)) for a in shlex.split(template)]
        if "{0}" not in template:
            argv.append(str(script_file))
        exe = shutil.which(argv[0], path=env["PATH"])
        if exe is None and argv[0] == "python":
            exe = sys.executable
        if exe is None:
            return 127, "", f"{argv[0]}: not found on PATH"
        argv[0] = exe
        if not cwd.is_dir():
            return 1, "", f"An error occurred trying to start process with working directory '{cwd}': no such directory"
        out_f, err_f = st.files / f"stdout_{index}", st.files / f"stderr_{index}"
        with out_f.open("wb") as out, err_f.open("wb") as err:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True
            )
            st.pgids.append(proc.pid)
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = -9
                err.write(
                    f"\nThe step exceeded the harness's step_timeout ({self.timeout}s) and was killed.\n".encode()
                )
        stdout = out_f.read_text(errors="replace")
        self._add_masks(stdout)
        return code, stdout, err_f.read_text(errors="replace")

    def _add_masks(self, stdout: str) -> None:
        for m in re.finditer(r"^::add-mask::(.+)$", stdout, re.M):
            if m.group(1).strip():
                self.run.masks.append(m.group(1).strip())


def _protected(name: str) -> bool:
    return name.startswith(("GITHUB_", "RUNNER_"))


@dataclass
class _JobState:
    job_id: str
    job: dict
    values: dict[str, Any]
    job_env: dict[str, str]
    workspace: Path
    temp: Path
    files: Path
    defaults: dict
    token: dict[str, str]
    github_env: dict[str, str] = field(default_factory=dict)
    path_prefix: list[str] = field(default_factory=list)
    steps_ctx: dict[str, dict] = field(default_factory=dict)
    failed: bool = False
    pgids: list[int] = field(default_factory=list)

    def kill_leftovers(self) -> None:
        """Like the runner's orphan clean-up at the end of a job: end what the job's steps left running."""
        for pgid in self.pgids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGTERM)
