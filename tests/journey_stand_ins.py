"""Stand-ins for what a CI journey cannot reach here: the Pulumi CLI and engine, the `sky` CLI and the cloud.

They stand in for the network and the GPU, not for the kit: `pulumi up` runs the deployment folder's own
`__main__.py` with the folder's own virtualenv (Pulumi.yaml's `virtualenv`, made by the workflow from the
committed wheel) under Pulumi's official mocks, with the stack's config file and secrets; `sky serve up/update`
takes the task YAML `selfhost render sky` wrote. A deployment that succeeds "runs" as the local OpenAI-compatible
stand-in server (tests/fake_vllm_server.py) on 127.0.0.1, keyed with the stack's `apiKey` / the `VLLM_API_KEY`
secret, serving the spec's model name. The kubernetes stack's cluster is reached as pulumi-kubernetes reaches it,
through the kubeconfig file KUBECONFIG names (no file, or no current context in it: the update fails).

The "cloud" is a folder (env JOURNEY_CLOUD): `calls.jsonl` (every CLI call, argv without values read from stdin),
`pulumi/<project>/<stack>.json` (stack state: its deployments, destroyed or not), `sky/<service>.json`, `pids`
(every endpoint process started, for the test to stop by PID), and `broken.txt`: lines of text; a deployment whose
spec (or task) contains one of them comes up misconfigured (the key guards /v1 only, so `selfhost smoke` fails),
which is how a test makes a release fail its gate.

    python tests/journey_stand_ins.py pulumi ARGS...  |  python tests/journey_stand_ins.py sky ARGS...
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
SECURE_PREFIX = "standin:"  # the stand-in's "encryption": Pulumi's secure values are opaque, so are these


def cloud() -> Path:
    return Path(os.environ["JOURNEY_CLOUD"])


def record(tool: str, argv: list[str]) -> None:
    with (cloud() / "calls.jsonl").open("a") as f:
        f.write(json.dumps({"tool": tool, "argv": argv, "cwd": os.getcwd()}) + "\n")


def fail(message: str, code: int = 1) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def write_bin(bin_dir: Path, *tools: str) -> Path:
    """`pulumi` and/or `sky` executables in bin_dir (put it on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for tool in tools:
        path = bin_dir / tool
        path.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{Path(__file__).resolve()}" {tool} "$@"\n')
        path.chmod(0o755)
    return bin_dir


def calls(cloud_dir: Path, tool: str | None = None) -> list[list[str]]:
    path = cloud_dir / "calls.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r["argv"] for r in rows if tool is None or r["tool"] == tool]


def endpoint_pids(cloud_dir: Path) -> list[int]:
    path = cloud_dir / "pids"
    return [int(p) for p in path.read_text().split()] if path.exists() else []


# ---- the "cloud": a deployment comes up as the stand-in server --------------------------------------------------


def _broken(text: str) -> bool:
    path = cloud() / "broken.txt"
    marks = [m for m in path.read_text().splitlines() if m.strip()] if path.exists() else []
    return any(m in text for m in marks)


def start_endpoint(api_key: str, model: str, broken: bool) -> str:
    sys.path.insert(0, str(HERE))
    from fake_vllm_server import free_port, start_subprocess

    port = free_port()
    args = ["--api-key", api_key, "--model", model, "--guard", "v1" if broken else "all"]
    proc = start_subprocess(port, *args, preexec_fn=os.setsid)  # the "cloud" outlives the CI step
    with (cloud() / "pids").open("a") as f:
        f.write(f"{proc.pid}\n")
    return f"http://127.0.0.1:{port}"


def stop_endpoint(pid: int | None) -> None:
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)


# ---- pulumi ------------------------------------------------------------------------------------------------------


def _project() -> tuple[str, dict]:
    path = Path("Pulumi.yaml")
    if not path.exists():
        fail("no Pulumi.yaml project file found (searching upwards from the current directory)")
    project = yaml.safe_load(path.read_text())
    return project["name"], project


def _backend() -> Path:
    url = os.environ.get("PULUMI_BACKEND_URL", "")
    if not url.startswith("file://"):
        fail("PULUMI_ACCESS_TOKEN must be set for login during non-interactive CLI sessions (no backend URL)")
    if not os.environ.get("PULUMI_CONFIG_PASSPHRASE"):
        fail("passphrase must be set with PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE")
    return Path(url.removeprefix("file://"))


def _state_path(project: str, stack: str) -> Path:
    return _backend() / "pulumi" / project / f"{stack}.json"


def _current_stack(project: str) -> str:
    path = _backend() / "pulumi" / project / ".selected"
    if not path.exists():
        fail("no stack selected; please use `pulumi stack select`")
    return path.read_text().strip()


def _opt(argv: list[str], name: str) -> str | None:
    if name in argv:
        return argv[argv.index(name) + 1]
    return next((a.split("=", 1)[1] for a in argv if a.startswith(name + "=")), None)


def pulumi(argv: list[str]) -> None:
    record("pulumi", argv)
    if argv[:1] == ["version"]:
        print("v3.999.0-standin")
        return
    project, meta = _project()
    if argv[:2] == ["stack", "select"]:
        name = next(a for a in argv[2:] if not a.startswith("-"))
        path = _state_path(project, name)
        if not path.exists():
            if "--create" not in argv:
                fail(f"no stack named '{name}' found")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"deployments": [], "destroyed": False}))
        (path.parent / ".selected").write_text(name)
        return
    stack = _opt(argv, "--stack") or _opt(argv, "-s") or _current_stack(project)
    state_path = _state_path(project, stack)
    if not state_path.exists():
        fail(f"no stack named '{stack}' found")
    state = json.loads(state_path.read_text())
    config_file = Path(f"Pulumi.{stack}.yaml")
    if argv[:2] == ["config", "set"]:
        rest = [a for a in argv[2:] if not a.startswith("-") and a not in (stack,)]
        key, value = rest[0], (rest[1] if len(rest) > 1 else sys.stdin.read())
        full = key if ":" in key else f"{project}:{key}"
        doc = yaml.safe_load(config_file.read_text()) if config_file.exists() else {}
        doc = doc or {}
        doc.setdefault("config", {})
        if "--secret" in argv:
            opaque = SECURE_PREFIX + base64.b64encode(value.encode()).decode()
            doc["config"][full] = {"secure": opaque}
        else:
            doc["config"][full] = value
        config_file.write_text(yaml.safe_dump(doc, sort_keys=False))
        return
    if argv[:1] == ["up"]:
        if "--yes" not in argv and "-y" not in argv:
            fail("--yes must be passed in to proceed when running in non-interactive mode")
        _up(project, meta, stack, state, config_file)
        state_path.write_text(json.dumps(state, indent=1))
        return
    if argv[:2] == ["stack", "output"]:
        outputs = state["deployments"][-1]["outputs"] if state["deployments"] else {}
        name = next((a for a in argv[2:] if not a.startswith("-") and a != stack), None)
        print(json.dumps(outputs) if name is None else outputs.get(name, ""))
        return
    if argv[:1] == ["destroy"]:
        for dep in state["deployments"]:
            stop_endpoint(dep.get("pid"))
        state["destroyed"] = True
        state_path.write_text(json.dumps(state, indent=1))
        return
    fail(f"the pulumi stand-in does not know `pulumi {' '.join(argv)}`")


RUN_PROGRAM = """
import json, sys
from pathlib import Path
import selfhost
from selfhost.stack.preview import PlaceholderMocks, engine_config, run_program
cloud, project, stack, config_path, out = sys.argv[1:6]
config = json.loads(Path(config_path).read_text())
engine, secret_keys = engine_config(cloud, {k: v for k, v in config.items() if k not in ("runpod:token",)})
mocks = PlaceholderMocks()
try:
    outputs = run_program(Path("__main__.py").resolve(), project, engine, secret_keys, mocks, stack=stack)
except Exception as err:
    print(str(err), file=sys.stderr)
    raise SystemExit(255)
Path(out).write_text(json.dumps({"outputs": outputs, "resources": [[t, n] for t, n, _ in mocks.resources],
                                 "kit": str(Path(selfhost.__file__).resolve())}, default=str))
"""


def _cluster() -> dict:
    """The cluster pulumi-kubernetes would apply to: KUBECONFIG's current context (the file's mode kept, for the
    test to check the workflow wrote it private)."""
    path = Path(os.environ.get("KUBECONFIG") or Path.home() / ".kube" / "config")
    if not path.is_file():
        fail(f"configured Kubernetes cluster is unreachable: unable to load kubeconfig {path}")
    doc = yaml.safe_load(path.read_text()) or {}
    context = doc.get("current-context")
    if not context or context not in {c.get("name") for c in doc.get("contexts") or []}:
        fail(f"configured Kubernetes cluster is unreachable: context {context!r} not found in {path}")
    return {"context": context, "mode": oct(path.stat().st_mode & 0o777)}


def _up(project: str, meta: dict, stack: str, state: dict, config_file: Path) -> None:
    cloud_name = project.removeprefix("selfhost-")
    cluster = _cluster() if cloud_name == "kubernetes" else None
    raw = (yaml.safe_load(config_file.read_text()) or {}).get("config", {}) if config_file.exists() else {}
    config = {}
    for key, value in raw.items():
        name = key.split(":", 1)[1] if key.startswith(f"{project}:") else key
        if isinstance(value, dict) and "secure" in value:
            value = base64.b64decode(value["secure"].removeprefix(SECURE_PREFIX)).decode()
        config[name] = value
    venv = Path(meta.get("runtime", {}).get("options", {}).get("virtualenv", "venv"))
    python = venv / "bin" / "python"
    if not python.exists():
        fail(f"The 'virtualenv' option in Pulumi.yaml is set to {venv}, but {venv} doesn't appear to be a virtualenv")
    work = cloud() / "tmp"
    work.mkdir(exist_ok=True)
    cfg, out = work / f"config-{os.getpid()}.json", work / f"out-{os.getpid()}.json"
    cfg.write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(
        [str(python), "-c", RUN_PROGRAM, cloud_name, project, stack, str(cfg), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    cfg.unlink()
    if proc.returncode != 0:
        print(proc.stdout + proc.stderr, file=sys.stderr)
        fail("update failed", 255)
    result = json.loads(out.read_text())
    out.unlink()
    spec_path = Path(config.get("specFile", "selfhost.yaml"))
    spec_text = spec_path.read_text() if spec_path.exists() else ""
    spec = yaml.safe_load(spec_text) or {}
    previous = state["deployments"][-1] if state["deployments"] else None
    url = start_endpoint(str(config.get("apiKey", "")), str(spec.get("model", "fake")), _broken(spec_text))
    if previous:  # the replaced deployment's machines go
        stop_endpoint(previous.get("pid"))
    pid = endpoint_pids(cloud())[-1]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    outputs = {**result["outputs"], "endpointUrl": url}
    state["deployments"].append(
        {
            "commit": commit,
            "spec_sha256": hashlib.sha256(spec_text.encode()).hexdigest(),
            "outputs": outputs,
            "resources": result["resources"],
            "kit": result["kit"],
            "pid": pid,
            **({"cluster": cluster} if cluster else {}),
            "at": time.time(),
        }
    )
    state["destroyed"] = False
    print(f"Resources: {len(result['resources'])} declared; endpointUrl: {url}")


# ---- sky ---------------------------------------------------------------------------------------------------------


def sky(argv: list[str]) -> None:
    record("sky", argv)
    if not os.environ.get("SKYPILOT_API_SERVER_ENDPOINT"):
        fail("no SkyPilot API server (SKYPILOT_API_SERVER_ENDPOINT): this runner keeps no state")
    token = os.environ.get("SKYPILOT_SERVICE_ACCOUNT_TOKEN", "")
    if not token.startswith("sky_"):
        fail('Invalid service account token format. Token must start with "sky_"')
    folder = cloud() / "sky"
    folder.mkdir(exist_ok=True)
    if argv[:2] == ["serve", "status"]:
        names = [a for a in argv[2:] if not a.startswith("-")]
        if "--endpoint" in argv:
            state = json.loads((folder / f"{names[0]}.json").read_text())
            print(state["endpoint"].removeprefix("http://"))
            return
        services = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
        services = [s for s in services if not names or s["name"] in names]
        if not services:
            print("No existing services.")
            return
        print("NAME  VERSION  UPTIME  STATUS  REPLICAS  ENDPOINT")
        for s in services:
            print(f"{s['name']}  {len(s['versions'])}  1m  READY  1/1  {s['endpoint']}")
        return
    if argv[:2] in (["serve", "up"], ["serve", "update"]):
        update = argv[1] == "update"
        with_value = {"-n", "--service-name", "--mode", "--secret", "--env", "--env-file", "--secret-file"}
        positional, secrets, i = [], [], 2
        while i < len(argv):
            if argv[i] in with_value:
                if argv[i] == "--secret":
                    secrets.append(argv[i + 1])
                i += 2
                continue
            if not argv[i].startswith("-"):
                positional.append(argv[i])
            i += 1
        name = positional[0] if update else _opt(argv, "-n")
        task_path = Path(positional[1] if update else positional[0])
        path = folder / f"{name}.json"
        if update != path.exists():
            fail(f"service {name!r} {'does not exist' if update else 'already exists'}")
        missing = [s for s in secrets if not os.environ.get(s)]
        if missing:
            fail(f"--secret {missing[0]}: not set in the environment")
        text = task_path.read_text()
        task = yaml.safe_load(text)
        tls = (task.get("service") or {}).get("tls") or {}
        for role in ("keyfile", "certfile"):  # SkyPilot uploads them from the client: they must be there
            if role in tls and not Path(os.path.expanduser(tls[role])).is_file():
                fail(f"service.tls.{role} {tls[role]} does not exist")
        model = next((a for a in str(task.get("run", "")).split() if a.startswith("--served-model-name=")), None)
        served = model.split("=", 1)[1] if model else _served_name(str(task.get("run", "")))
        state = json.loads(path.read_text()) if update else {"name": name, "versions": []}
        url = start_endpoint(os.environ["VLLM_API_KEY"], served, _broken(text))
        if state["versions"]:
            stop_endpoint(state["versions"][-1]["pid"])
        state["versions"].append(
            {
                "task_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "pid": endpoint_pids(cloud())[-1],
                "secrets": secrets,
                "service": bool(task.get("service")),
            }
        )
        state["endpoint"] = url
        path.write_text(json.dumps(state, indent=1))
        print(f"Service {name!r} {'updated' if update else 'is spinning up'}: {url}")
        return
    if argv[:2] == ["serve", "down"]:
        for name in [a for a in argv[2:] if not a.startswith("-")]:
            state = json.loads((folder / f"{name}.json").read_text())
            stop_endpoint(state["versions"][-1]["pid"])
            (folder / f"{name}.json").rename(folder / f"{name}.down")
        return
    fail(f"the sky stand-in does not know `sky {' '.join(argv)}`")


def _served_name(run: str) -> str:
    words = run.replace("\\\n", " ").split()
    return words[words.index("--served-model-name") + 1] if "--served-model-name" in words else "fake"


if __name__ == "__main__":
    tool, *rest = sys.argv[1:]
    {"pulumi": pulumi, "sky": sky}[tool](rest)
