"""The local target's command line, environment, state file and lifecycle.

The lifecycle tests run `selfhost up/down local` with a stand-in for the vLLM virtualenv's Python
(SELFHOST_VLLM_PYTHON): a small script that serves /health like vLLM, so start, wait, state file
and stop-by-PID run for real in a second. The real vLLM server is exercised in test_e2e_local.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fake_vllm_server import free_port

from costing.errors import UserError
from costing.performance.fit import FitRequest, fit_check
from costing.performance.vllm_args import vllm_serve_argv
from selfhost import auth_install
from selfhost.local import server as target


def settings(model="llama-3.1-8b", gpu="A40", gpus=1, precision="bf16", **kw):
    return fit_check(FitRequest(model=model, precision=precision, gpu=gpu, gpus=gpus, **kw)).settings


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    return d


def flags(argv: list[str]) -> dict[str, str | None]:
    """--flag value pairs (value None for switches)."""
    out, i = {}, 0
    while i < len(argv):
        a = argv[i]
        if a.startswith("--"):
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if nxt is not None and not nxt.startswith("--"):
                out[a] = nxt
                i += 2
                continue
            out[a] = None
        i += 1
    return out


def test_local_command_is_the_cloud_command_with_only_the_listed_cpu_changes(model_dir):
    s = settings()
    local, notes = target.cpu_adjustments(s, model_dir, port=8123)
    argv = target.local_argv(local, model_dir, Path("/venv/bin/python"))
    assert argv[:4] == ["/venv/bin/python", str(target.LAUNCHER), "serve", str(model_dir)]
    cloud, here = flags(vllm_serve_argv(s)[3:]), flags(argv[4:])
    changed = {k for k in cloud if cloud[k] != here.get(k)}
    assert changed == {"--host", "--port", "--max-model-len"}  # loopback, chosen port, the model's context
    assert here["--max-model-len"] == "2048" and here["--host"] == "127.0.0.1" and here["--port"] == "8123"
    assert set(here) - set(cloud) == {"--enforce-eager"}
    assert any("max_position_embeddings" in n for n in notes) and any("enforce-eager" in n for n in notes)


def test_multi_gpu_and_quantized_specs_are_adjusted_explicitly(model_dir):
    s = settings(model="llama-3.2-3b", precision="fp8", gpu="A40", gpus=2)  # dynamic FP8 of the bf16 repo
    assert s.tensor_parallel_size == 2 and s.quantization == "fp8"
    local, notes = target.cpu_adjustments(s, model_dir, port=8000)
    assert local.tensor_parallel_size == 1 and local.quantization is None
    here = flags(target.local_argv(local, model_dir, Path("py"))[4:])
    assert here["--tensor-parallel-size"] == "1" and "--quantization" not in here
    assert any("parallel" in n for n in notes) and any("quantiz" in n for n in notes)
    assert local.served_model_name == s.served_model_name  # clients use the same name as on the cloud


def test_server_env_is_offline_with_caches_in_the_scratch_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFHOST_SCRATCH", str(tmp_path))
    env = target.server_env("k123", 2)
    assert env["VLLM_API_KEY"] == "k123" and env["VLLM_CPU_KVCACHE_SPACE"] == "2"
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_TARGET_DEVICE"] == "cpu"
    for var in ("VLLM_CACHE_ROOT", "TORCHINDUCTOR_CACHE_DIR", "XDG_CACHE_HOME", "HF_HOME"):
        assert env[var].startswith(str(tmp_path))
    assert env["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "auth")  # where --middleware finds selfhost_auth


def test_ipc_sockets_go_to_a_short_private_folder_whatever_the_temp_folder(tmp_path, monkeypatch):
    import shutil
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    short = Path(tempfile.mkdtemp(prefix="ipc-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(short))
    try:
        folder = Path(target.server_env("k123", 1)["VLLM_RPC_BASE_PATH"])
        assert folder.parent == short  # the temp folder, when a socket path there fits
        assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700 and folder.stat().st_uid == os.getuid()
        assert len(f"{folder}/{'0' * target.UUID_LEN}") <= target.SOCKET_PATH_MAX
    finally:
        shutil.rmtree(short)

    deep = tmp_path / ("d" * 100)  # a socket path under it would be ~150 bytes: vLLM dies at start
    deep.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setenv("TMPDIR", str(deep))
    folder = Path(target.server_env("k123", 1)["VLLM_RPC_BASE_PATH"])
    assert folder.parent == Path("/tmp") and folder.stat().st_mode & 0o777 == 0o700


def test_a_planted_link_for_the_ipc_folder_is_refused(tmp_path, monkeypatch):
    import shutil
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="ipc-", dir="/tmp"))  # short enough to be chosen
    try:
        monkeypatch.setattr(tempfile, "tempdir", None)
        monkeypatch.setenv("TMPDIR", str(short))
        (short / f"selfhost-ipc-{os.getuid()}").symlink_to(tmp_path)
        with pytest.raises(UserError, match="not a folder of yours"):
            target.server_env("k123", 1)
    finally:
        shutil.rmtree(short)


def test_missing_vllm_venv_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("SELFHOST_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(UserError, match="make vllm-venv"):
        target.vllm_python()


def test_model_path_without_config_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"config\.json"):
        target.model_max_len(tmp_path)


FAKE_VLLM = textwrap.dedent('''\
    """Stand-in for `python vllm_main.py serve MODEL --port P ...`: /health like vLLM, or dies if asked."""
    import http.server, os, sys
    args = sys.argv[1:]
    assert args[1] == "serve", args
    if os.environ.get("FAKE_VLLM_DIE"):
        print("RuntimeError: boom from the engine", flush=True)
        sys.exit(3)
    port = int(args[args.index("--port") + 1])
    assert os.environ["VLLM_API_KEY"]
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404); self.end_headers()
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


@pytest.fixture
def fake_env(tmp_path, model_dir):
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_VLLM)
    wrapper = tmp_path / "python"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} {script} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "SELFHOST_VLLM_PYTHON": str(wrapper), "SELFHOST_SCRATCH": str(tmp_path / "scratch")}
    return env, model_dir


def run_cli(env, *args, timeout=60):
    return subprocess.run(
        [sys.executable, "-m", "selfhost.cli", *args], capture_output=True, text=True, env=env, timeout=timeout
    )


def test_up_json_state_file_and_down_by_pid(fake_env):
    env, model_dir = fake_env
    port = free_port()
    up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(port), "--format", "json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    pid = info["pid"]
    try:
        assert info["url"] == f"http://127.0.0.1:{port}" and info["model"] == "llama-3.1-8b"
        assert len(info["api_key"]) >= 24  # generated with secrets.token_urlsafe
        state = Path(env["SELFHOST_SCRATCH"]) / "local" / "state.json"
        assert json.loads(state.read_text())["pid"] == pid
        assert oct(state.stat().st_mode & 0o777) == "0o600"  # holds the key
        again = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(free_port()))
        assert again.returncode == 2 and "already running" in again.stderr
        down = run_cli(env, "down", "local")
        assert down.returncode == 0 and f"PID {pid}" in down.stdout
        assert not Path(f"/proc/{pid}").exists() or b"fake_vllm" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert not state.exists()
        assert "no local server" in run_cli(env, "down", "local").stdout
    finally:
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, 9)


def test_up_with_given_key_and_table_output(fake_env):
    env, model_dir = fake_env
    # by environment (argv shows in `ps`); a production key exported as VLLM_API_KEY is never taken
    env = {**env, "SELFHOST_LOCAL_API_KEY": "mykey-0123456789abcdef", "VLLM_API_KEY": "prod-key-0123456789abcdef"}
    up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(free_port()))
    try:
        assert up.returncode == 0, up.stderr
        assert "mykey" not in up.stdout + up.stderr  # the key is never printed in table mode: it is in the state file
        assert (
            "api key: `api_key` in " in up.stdout and "CPU adjustment:" in up.stdout and "--enforce-eager" in up.stdout
        )
        assert "stop: selfhost down local (SIGTERM; vLLM drains in-flight requests for up to 300 s)" in up.stdout
        state = json.loads((Path(env["SELFHOST_SCRATCH"]) / "local" / "state.json").read_text())
        assert state["api_key"] == "mykey-0123456789abcdef"
        assert "prod-key" not in json.dumps(state)
        # the auth layer's module is written where the server's PYTHONPATH points
        written = Path(env["SELFHOST_SCRATCH"]) / "auth" / "selfhost_auth.py"
        assert written.read_bytes() == auth_install.source()
    finally:
        run_cli(env, "down", "local")


WEAK_KEYS = [
    ("Zq8vR2mW", "shorter than 16 characters"),
    ("a" * 16, "different characters"),
    ("ab" * 12, "different characters"),
    ("Zq8vR2mWx4Tn7LpB9cYd\n", "newline"),
    ("Zq8vR2mWx4Tn7LpB 9cYd", "space"),
    ("Zq8vR2mWx4Tn7LpB9cYdé", "non-ASCII"),
]


@pytest.mark.parametrize(("key", "why"), WEAK_KEYS, ids=[w[1] + str(i) for i, w in enumerate(WEAK_KEYS)])
def test_a_weak_key_is_refused_before_anything_starts(fake_env, key, why):
    env, model_dir = fake_env
    up = run_cli({**env, "SELFHOST_LOCAL_API_KEY": key}, "up", "local", "--model-path", str(model_dir))
    assert up.returncode == 2 and why in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert len(up.stderr.strip().splitlines()) == 1 and key.strip() not in up.stderr
    assert not (Path(env["SELFHOST_SCRATCH"]) / "local").exists()


def test_key_files_are_private_from_the_first_byte_with_umask_000(fake_env):
    env, model_dir = fake_env
    scratch = Path(env["SELFHOST_SCRATCH"])
    port = free_port()
    cmd = [sys.executable, "-m", "selfhost.cli", "up", "local", "--model-path", str(model_dir), "--port", str(port)]
    up = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60, preexec_fn=lambda: os.umask(0))
    try:
        assert up.returncode == 0, up.stderr
        state = scratch / "local" / "state.json"
        assert oct(state.stat().st_mode & 0o777) == "0o600"
        assert oct(state.parent.stat().st_mode & 0o777) == "0o700"
        # created with that mode (no write-then-chmod window): the writer opens it 0600 before writing
        seen = []
        real_open = os.open

        def spy(path, flags, mode=0o777, *a, **k):
            seen.append((str(path), flags, mode))
            return real_open(path, flags, mode, *a, **k)

        old = os.umask(0)
        try:
            os.open = spy  # type: ignore[assignment]
            target.write_private(scratch / "x" / "k.json", "{}")
        finally:
            os.open = real_open  # type: ignore[assignment]
            os.umask(old)
        assert seen and seen[0][2] == 0o600 and seen[0][1] & os.O_CREAT and seen[0][1] & os.O_EXCL
        assert oct((scratch / "x").stat().st_mode & 0o777) == "0o700"
        assert oct((scratch / "x" / "k.json").stat().st_mode & 0o777) == "0o600"
    finally:
        assert run_cli(env, "down", "local").returncode == 0
    assert not (scratch / "local" / "state.json").exists()  # `down` removes the file holding the key


def test_server_that_dies_is_reported_with_its_log_tail(fake_env):
    env, model_dir = fake_env
    env = {**env, "FAKE_VLLM_DIE": "1"}
    up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(free_port()))
    assert up.returncode == 2
    assert "exited with code 3 before it was ready" in up.stderr
    assert "boom from the engine" in up.stderr  # the log's tail is shown
    assert not (Path(env["SELFHOST_SCRATCH"]) / "local" / "state.json").exists()


def test_port_in_use_is_refused_before_starting(fake_env):
    env, model_dir = fake_env
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(s.getsockname()[1]))
    assert up.returncode == 2 and "in use" in up.stderr
    assert not (Path(env["SELFHOST_SCRATCH"]) / "local" / "vllm.log").exists()  # nothing was launched


def test_health_timeout_stops_the_server(fake_env, tmp_path):
    env, model_dir = fake_env
    # a launcher that never serves /health: sleep
    slow = tmp_path / "slow"
    slow.write_text("#!/bin/sh\nexec sleep 600\n")
    slow.chmod(0o755)
    env = {**env, "SELFHOST_VLLM_PYTHON": str(slow)}
    up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--port", str(free_port()), "--timeout", "1.5")
    assert up.returncode == 2 and "not ready after 1.5s" in up.stderr
    assert not (Path(env["SELFHOST_SCRATCH"]) / "local" / "state.json").exists()


def test_bad_model_path_is_refused(fake_env, tmp_path):
    env, _ = fake_env
    up = run_cli(env, "up", "local", "--model-path", str(tmp_path / "none"), "--port", str(free_port()))
    assert up.returncode == 2 and "not a directory" in up.stderr


def test_the_drain_is_the_builders_unless_asked_and_zero_is_no_drain(model_dir):
    s = settings()
    kept, notes = target.cpu_adjustments(s, model_dir, port=8123)
    assert flags(target.local_argv(kept, model_dir, Path("py"))[4:])["--shutdown-timeout"] == str(s.shutdown_timeout_s)
    assert not any("shutdown-timeout" in n for n in notes)
    off, notes = target.cpu_adjustments(s, model_dir, port=8123, shutdown_timeout_s=0)
    assert flags(target.local_argv(off, model_dir, Path("py"))[4:])["--shutdown-timeout"] == "0"
    assert any("shutdown-timeout 0" in n and "no drain" in n for n in notes)


@pytest.mark.parametrize("value", ["-1", "3601", "ten"])
def test_a_bad_shutdown_timeout_is_refused_before_anything_starts(fake_env, value):
    env, model_dir = fake_env
    up = run_cli(env, "up", "local", "--model-path", str(model_dir), "--shutdown-timeout", value)
    assert up.returncode == 2 and "--shutdown-timeout" in up.stderr and "Traceback" not in up.stderr, up.stderr
    assert len(up.stderr.strip().splitlines()) == 1
    assert not (Path(env["SELFHOST_SCRATCH"]) / "local").exists()


# a leader that starts a child in its own group (as vLLM's API server starts its engine core) and then, on SIGTERM,
# either exits leaving the child behind or ignores the signal until it is killed
LEADER = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    signal.signal(signal.SIGTERM, (lambda *_: sys.exit(0)) if sys.argv[1] == "exit" else signal.SIG_IGN)
    print(child.pid, flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("on_term", ["exit", "ignore"])
def test_a_stop_leaves_nothing_of_the_servers_process_group(on_term):
    leader = subprocess.Popen(
        [sys.executable, "-c", LEADER, on_term], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        child = int(leader.stdout.readline()) if leader.stdout else 0
        assert sorted(target.group_members(leader.pid)) == sorted([leader.pid, child])
        stopped = target.stop_pid(leader.pid, grace_s=1.0)
        assert stopped.killed is (on_term == "ignore")
        assert target.group_members(leader.pid) == []  # the child went with its leader, however the leader went
        assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split(")")[1][:3]
    finally:
        for pid in target.group_members(leader.pid):
            os.kill(pid, 9)


# a group like vLLM's: the leader (API server) starts an engine core (two threads) and a worker, named as vLLM names
# them (setproctitle: the kernel's comm keeps the first 15 characters)
NAMED = textwrap.dedent(
    """
    import subprocess, sys, time
    body = "import ctypes, sys, threading, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode()[:15]); "
    body += "threading.Thread(target=time.sleep, args=(600,), daemon=True).start(); time.sleep(600)"
    kids = [subprocess.Popen([sys.executable, "-c", body, name]) for name in ("VLLM::EngineCore", "VLLM::Worker")]
    print(*(k.pid for k in kids), flush=True)
    time.sleep(600)
    """
)


def test_the_engine_core_yields_the_cpu_to_the_api_server_and_the_worker_does_not():
    leader = subprocess.Popen([sys.executable, "-c", NAMED], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        core, worker = (int(x) for x in (leader.stdout.readline() if leader.stdout else "0 0").split())
        deadline = time.monotonic() + 10
        while Path(f"/proc/{core}/comm").read_text().strip() != "VLLM::EngineCor" and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)  # its second thread started
        assert target.yield_engine_core(leader.pid) == 2  # the engine core's two threads, no other

        def nices(pid: int) -> set[int]:
            return {os.getpriority(os.PRIO_PROCESS, int(t.name)) for t in Path(f"/proc/{pid}/task").iterdir()}

        assert nices(core) == {target.ENGINE_CORE_NICE}
        mine = {os.getpriority(os.PRIO_PROCESS, 0)}  # what the group inherited
        assert nices(worker) == mine and nices(leader.pid) == mine
    finally:
        for pid in target.group_members(leader.pid):
            os.kill(pid, 9)
        leader.wait(timeout=10)
