"""The boot script the AWS and GCP VMs run: a systemd unit that runs the vllm/vllm-openai container.

Secrets never appear here: the script holds the commands that fetch them (by ARN or secret name)
from the cloud's store through the VM's own identity, run again before every (re)start of the unit.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from costing.performance.vllm_allowlist import check_env
from costing.performance.vllm_args import API_KEY_ENV, SERVE_ENV
from selfhost import auth_install
from selfhost.stack.checks import check_script_values
from selfhost.stack.plan import StackPlan

STARTED_FILE = "/run/selfhost/vllm-started"  # touched at each vLLM (re)start: the watchdog's grace counts from it

UNIT = "vllm.service"
SECRETS_FILE = "/run/selfhost/vllm.env"  # tmpfs, root only, rewritten at each start
HF_CACHE = "/var/lib/selfhost/hf"
GATE_UNIT = "selfhost-ready.service"
HEALTH_UNIT = "selfhost-health.service"
READY_DIR = "/run/selfhost/health"  # holds `ready` while the authenticated probe passes (ready_port)
# The host's Python runs the auth module the script wrote (python3 -m selfhost_auth: exit 2 on a missing or weak key).
KEY_CHECK = f"PYTHONPATH={auth_install.CONTAINER_DIR} /usr/bin/python3 -m {auth_install.MODULE}"
DELIM = "SELFHOST_EOF"  # heredoc delimiter; no rendered value may hold a line break, so none can end it


def systemd_arg(arg: str) -> str:
    """Quote one argument for a systemd Exec line (systemd expands $ and % itself)."""
    text = arg.replace("%", "%%").replace("$", "$$")
    if text and all(c.isalnum() or c in "-_./:=,+@" for c in text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def docker_run(
    plan: StackPlan,
    *,
    env: Mapping[str, str] | None = None,
    mounts: Sequence[tuple[str, str]] = (),
    loopback_only: bool = False,
) -> list[str]:
    """`docker run` for the vLLM container: all GPUs, host IPC (NCCL), the API port, the HF cache.

    The port is published on the VM's interfaces: the cloud's load balancer (which holds the TLS
    certificate) reaches it, and its security group / firewall admits only that. `loopback_only`
    publishes it on 127.0.0.1 instead. `env` (name -> non-secret value) and `mounts` (host path,
    container path read-only) are for layers the container loads (e.g. an auth middleware file);
    secrets go through the env file only.
    """
    port = plan.port
    publish = f"127.0.0.1:{port}:{port}" if loopback_only else f"{port}:{port}"
    extra: list[str] = []
    check_env(env or {}, "the vLLM container's environment")
    for name, value in (env or {}).items():
        extra += ["-e", f"{name}={value}"]
    for host, inside in mounts:
        extra += ["-v", f"{host}:{inside}:ro"]
    return [
        "/usr/bin/docker",
        "run",
        "--name",
        "vllm",
        "--rm",
        "--gpus",
        "all",
        "--ipc=host",
        "-p",
        publish,
        "--env-file",
        SECRETS_FILE,
        "-e",
        "HF_HOME=/hf",
        *(flag for k, v in SERVE_ENV.items() for flag in ("-e", f"{k}={v}")),
        "-v",
        f"{HF_CACHE}:/hf",
        *auth_install.docker_run_flags(),  # the auth layer vLLM's --middleware loads
        *extra,
        plan.image,
        *plan.container_args,
    ]


@dataclass(frozen=True)
class WeightsCache:
    """The stack's object-store mirror of the Hugging Face cache: one tar stream (symlinks kept), filled by
    the first replica once it serves, restored by every later one before vLLM starts (then offline).

    Each field is a shell command whose values the caller has quoted: `exists` succeeds when the object
    is there, `restore` writes it to stdout, `save` reads it from stdin."""

    where: str  # e.g. s3://bucket/key, for the log lines
    exists: str
    restore: str
    save: str


def weights_script(plan: StackPlan, cache: WeightsCache) -> str:
    """/opt/selfhost/weights.sh restore|save. Restore never blocks vLLM: without the mirror it downloads
    from Hugging Face as before; with it, HF_HUB_OFFLINE=1 keeps the replica off Hugging Face entirely."""
    marker = "/var/lib/selfhost/weights-restored"
    return f"""#!/bin/bash
# Weights mirror {cache.where}: restore before vLLM starts; save once, after this replica first served.
set -uo pipefail
case "${{1:-}}" in
  restore)
    if [ ! -f {marker} ] && {cache.exists}; then
      {cache.restore} | tar -C {HF_CACHE} -xf - && touch {marker} || echo "selfhost: weights restore failed" >&2
    fi
    [ -f {marker} ] && echo HF_HUB_OFFLINE=1 >> {SECRETS_FILE}
    exit 0 ;;
  save)
    [ -f {marker} ] || {cache.exists} || tar -C {HF_CACHE} -cf - hub | {cache.save} \
      || echo "selfhost: weights upload failed" >&2
    exit 0 ;;
esac
exit 2
"""


def ready_script(plan: StackPlan) -> str:
    """/opt/selfhost/ready.sh: exit 0 only when this machine's vLLM answers a 1-token authenticated completion.

    vLLM's /health answers while a wedged engine cannot generate; this probe generates. The key is read
    from the root-only env file and handed to curl as a header file (process substitution), never in argv."""
    import json

    r = plan.readiness
    body = json.dumps({"model": plan.fit.settings.served_model_name, "prompt": "ping", "max_tokens": 1})
    url = f"http://127.0.0.1:{int(r.port)}/v1/completions"
    return f"""#!/bin/bash
# Ready: a 1-token completion with the API key, answered by the vLLM on this machine.
set -euo pipefail
key=$(awk -v name={API_KEY_ENV} 'index($0, name "=") == 1 {{ print substr($0, length(name) + 2) }}' {SECRETS_FILE})
[ -n "$key" ]
curl -fsS -m {int(r.timeout_s) * 3} -o /dev/null -H @<(printf 'Authorization: Bearer %s\\n' "$key") \\
  -H 'Content-Type: application/json' -d {shlex.quote(body)} {shlex.quote(url)}
"""


def gate_unit(plan: StackPlan, action: str, gate: Gate | None = None) -> str:
    """A oneshot unit: wait until ready.sh passes, then run `action` (e.g. complete the group's launch
    lifecycle hook, so the machine joins the load balancer only now). Without `gate` it waits up to the
    readiness allowance from its own start; with one, up to `gate.deadline_s` from boot (the projected
    cold start), running `gate.heartbeat` every `gate.heartbeat_s` meanwhile and `gate.give_up` at the end."""
    r = plan.readiness
    if gate is None:
        wait = f"""deadline=$(( $(date +%s) + {int(r.initial_delay_s)} ))
until /opt/selfhost/ready.sh; do
  [ "$(date +%s)" -lt "$deadline" ] ||
    {{ echo "selfhost: not ready after {int(r.initial_delay_s)} s" >&2; exit 1; }}
  sleep 10
done"""
    else:
        wait = f"""# The deadline counts from boot (the launch), as the lifecycle hook does: the projected cold start.
boot=${{SELFHOST_BOOT_EPOCH:-$(( $(date +%s) - $(cut -d. -f1 /proc/uptime) ))}}
deadline=$(( boot + {int(gate.deadline_s)} ))
beat=0
until /opt/selfhost/ready.sh; do
  now=$(date +%s)
  if [ "$now" -ge "$deadline" ]; then
    echo "selfhost: not ready {int(gate.deadline_s)} s after boot" >&2
    {gate.give_up}
    exit 1
  fi
  if [ "$now" -ge "$beat" ]; then
    {gate.heartbeat} || echo "selfhost: heartbeat failed" >&2
    beat=$(( now + ${{SELFHOST_HEARTBEAT_S:-{int(gate.heartbeat_s)}}} ))
  fi
  sleep "${{SELFHOST_GATE_POLL_S:-10}}"
done"""
    return f"""cat > /opt/selfhost/gate.sh <<'{DELIM}'
#!/bin/bash
# Readiness gate: nothing routes to this machine before it has served one authenticated completion.
{wait}
{action}
{DELIM}
chmod 700 /opt/selfhost/gate.sh
cat > /etc/systemd/system/{GATE_UNIT} <<'{DELIM}'
[Unit]
Description=selfhost: let this machine join the load balancer once vLLM serves
After={UNIT}
[Service]
Type=oneshot
TimeoutStartSec=0
ExecStart=/opt/selfhost/gate.sh
[Install]
WantedBy=multi-user.target
{DELIM}
"""


@dataclass(frozen=True)
class Gate:
    """The readiness gate's deadline from boot and what it runs meanwhile (AWS: the launch hook's heartbeat)."""

    deadline_s: int
    heartbeat: str
    give_up: str
    heartbeat_s: int = 60


@dataclass(frozen=True)
class Drain:
    """What a leaving replica runs (selfhost.stack.drain_scripts): vLLM's graceful stop (ExecStop), the grace after each
    vLLM start in which the watchdog counts no failure, extra files and units (the AWS interruption handler,
    the metric publisher), and the units started once the gate passes (the publisher)."""

    stop_script: str
    stop_timeout_s: int
    watchdog_grace_s: int
    files: tuple[tuple[str, str], ...] = ()  # (path under /opt/selfhost, content)
    units: tuple[tuple[str, str, bool], ...] = ()  # (unit name, ExecStart, enabled at boot)
    after_ready: tuple[str, ...] = ()  # units started when the readiness gate passes


def fetch_line(env: str, cmd: str) -> str:
    """Fetch one secret into the env file. An assignment (unlike a printf argument) fails under `set -e`,
    and an empty value is refused: vLLM must never start without its API key.

    `cmd` is a shell command whose every value the caller has quoted (shlex.quote)."""
    if not env.isidentifier():
        raise ValueError(f"not an environment variable name: {env!r}")
    lines = [
        f"value=$({cmd})",
        f'[ -n "$value" ] || {{ echo "selfhost: {env} is empty" >&2; exit 1; }}',
    ]
    if env == API_KEY_ENV:  # the auth layer's key rules, before vLLM loads a model (the key by env, never argv)
        lines.append(f'{API_KEY_ENV}="$value" {KEY_CHECK} || exit 1')
    lines.append(f'printf \'%s=%s\\n\' {env} "$value" >> "$tmp"')
    return "\n".join(lines)


def boot_script(
    plan: StackPlan,
    fetch: dict[str, str],
    *,
    prelude: str = "",
    watchdog_action: str | None = None,
    ready_action: str | None = None,
    container_env: Mapping[str, str] | None = None,
    container_mounts: Sequence[tuple[str, str]] = (),
    loopback_only: bool = False,
    weights: WeightsCache | None = None,
    ready_port: int | None = None,
    gate: Gate | None = None,
    drain: Drain | None = None,
) -> str:
    """The whole script. `fetch` maps an env var (VLLM_API_KEY, HF_TOKEN) to a shell command printing its value.

    `weights`: restore the Hugging Face cache from the stack's bucket before each vLLM start, and fill
    the bucket once this replica has passed its readiness probe. `watchdog_action` runs after
    the readiness probe (ready.sh: a 1-token authenticated completion) fails three times in a row;
    `ready_action` runs once, the first time the probe passes (the readiness gate). `ready_port`: a
    tiny local endpoint answers GET /ready with 200 only while the probe passes (the gate creates the
    file, the watchdog removes it after three failures and restores it on success): a cloud health
    check pointed there routes to a VM only once it generates, never to a wedged engine.

    `gate`: the readiness gate's deadline from boot and heartbeat (AWS's launch hook). `drain`: vLLM stops
    gracefully (selfhost.stack.drain_scripts), the watchdog spares each start for its grace, and the drain's own
    files and units are installed.

    Every value is checked for line breaks (none can end a heredoc) and quoted for the shell or systemd."""
    run = docker_run(plan, env=container_env, mounts=container_mounts, loopback_only=loopback_only)
    check_script_values({f"container argument {i}": a for i, a in enumerate(run)})
    check_script_values(
        {
            **fetch,
            "prelude": prelude.replace("\n", " "),
            "watchdog": watchdog_action or "",
            "ready": ready_action or "",
            **({"weights": " ".join((weights.exists, weights.restore, weights.save))} if weights else {}),
            **({"gate": f"{gate.heartbeat} {gate.give_up}"} if gate else {}),
            **({f"unit {n}": f"{n} {cmd}" for n, cmd, _ in drain.units} if drain else {}),
        }
    )
    if drain and any(DELIM in text for _, text in (*drain.files, ("stop", drain.stop_script))):
        raise ValueError(f"a drain file holds the heredoc delimiter {DELIM}")
    if ready_port is not None:
        mark = f"mkdir -p {READY_DIR} && touch {READY_DIR}/ready"
        ready_action = f"{mark}\n{ready_action}" if ready_action else mark
        if not watchdog_action:
            watchdog_action = "true"
        watchdog_action = f"rm -f {READY_DIR}/ready; {watchdog_action}"
    if drain and drain.after_ready:  # e.g. the metric publisher: only a serving replica reports its load
        units = " ".join(drain.after_ready)
        start = f"systemctl start {units} || echo 'selfhost: could not start {units}' >&2"
        ready_action = f"{ready_action}\n{start}" if ready_action else start
    if weights:  # save after the first successful probe: the readiness gate's action, or its own unit
        save = "/opt/selfhost/weights.sh save"
        ready_action = f"{ready_action}\n{save}" if ready_action else save
    fetch_lines = "\n".join(fetch_line(env, cmd) for env, cmd in fetch.items())
    fit = plan.fit
    headline = (
        f"{fit.model.id} {fit.precision.id} on {fit.gpus_per_node}x {fit.gpu.name} ({plan.offer.id}, {plan.pricing})"
    )
    check_script_values({"headline": headline})
    units = " ".join(
        [
            UNIT,
            *(["vllm-watchdog.service"] if watchdog_action else []),
            *([GATE_UNIT] if ready_action else []),
            *([HEALTH_UNIT] if ready_port is not None else []),
            *([name for name, _, enabled in drain.units if enabled] if drain else []),
        ]
    )
    exec_start = " ".join(systemd_arg(a) for a in run)
    r = plan.readiness
    watchdog = ""
    probes = ""
    if weights:
        probes = f"""cat > /opt/selfhost/weights.sh <<'{DELIM}'
{weights_script(plan, weights).rstrip()}
{DELIM}
chmod 700 /opt/selfhost/weights.sh
"""
    if watchdog_action or ready_action:
        probes += f"""cat > /opt/selfhost/ready.sh <<'{DELIM}'
{ready_script(plan).rstrip()}
{DELIM}
chmod 700 /opt/selfhost/ready.sh
{gate_unit(plan, ready_action, gate) if ready_action else ""}"""
    restore = f" [ -d {READY_DIR} ] && touch {READY_DIR}/ready;" if ready_port is not None else ""
    health = ""
    if ready_port is not None:
        health = f"""cat > /etc/systemd/system/{HEALTH_UNIT} <<'{DELIM}'
[Unit]
Description=selfhost: GET /ready on port {int(ready_port)} is 200 only while vLLM serves authenticated completions
After=network-online.target
[Service]
Restart=always
ExecStartPre=/bin/mkdir -p {READY_DIR}
ExecStart=/usr/bin/python3 -m http.server {int(ready_port)} --bind 0.0.0.0 --directory {READY_DIR}
[Install]
WantedBy=multi-user.target
{DELIM}
"""
    if watchdog_action:
        if drain:  # no failure counts while vLLM starts: the grace runs from each (re)start of the unit
            wait = f"""grace=${{SELFHOST_WATCHDOG_GRACE_S:-{int(drain.watchdog_grace_s)}}}
started=${{SELFHOST_STARTED_FILE:-{STARTED_FILE}}}
# no stamp yet: vLLM's unit has not got to its first start (secrets, the weights restore)
starting() {{ [ $(( $(date +%s) - $(stat -c %Y "$started" 2>/dev/null || date +%s) )) -lt "$grace" ]; }}"""
            count = "elif ! starting; then failures=$((failures+1)); fi"
        else:
            wait, count = f"sleep {int(r.initial_delay_s)}", "else failures=$((failures+1)); fi"
        watchdog = f"""
cat > /opt/selfhost/watchdog.sh <<'{DELIM}'
#!/bin/bash
# Liveness: a 1-token authenticated completion on port {r.port}; after {r.failure_threshold} failures in a row
# the machine is replaced.
{wait}
failures=0
while true; do
  if /opt/selfhost/ready.sh; then failures=0;{restore} {count}
  if [ "$failures" -ge {int(r.failure_threshold)} ]; then {watchdog_action}; failures=0; fi
  sleep ${{SELFHOST_WATCHDOG_PERIOD_S:-{int(r.period_s)}}}
done
{DELIM}
chmod 700 /opt/selfhost/watchdog.sh
cat > /etc/systemd/system/vllm-watchdog.service <<'{DELIM}'
[Unit]
Description=selfhost: report an unhealthy vLLM to the instance group
After={UNIT}
[Service]
Restart=always
ExecStart=/opt/selfhost/watchdog.sh
[Install]
WantedBy=multi-user.target
{DELIM}
"""
    started, stop = "", "ExecStop=/usr/bin/docker stop -t 30 vllm"
    if drain:
        # first: the grace covers the secrets, the weights restore and vLLM's own start
        started = f"ExecStartPre=/bin/sh -c 'mkdir -p /run/selfhost && touch {STARTED_FILE}'\n"
        stop = f"ExecStop=/opt/selfhost/stop-vllm.sh\nTimeoutStopSec={int(drain.stop_timeout_s) + 30}"
        probes += f"""cat > /opt/selfhost/stop-vllm.sh <<'{DELIM}'
{drain.stop_script.rstrip()}
{DELIM}
chmod 700 /opt/selfhost/stop-vllm.sh
"""
        for path, text in drain.files:
            probes += f"""cat > /opt/selfhost/{path} <<'{DELIM}'
{text.rstrip()}
{DELIM}
chmod 700 /opt/selfhost/{path}
"""
        for name, command, _ in drain.units:
            probes += f"""cat > /etc/systemd/system/{name} <<'{DELIM}'
[Unit]
Description=selfhost: {name.removesuffix(".service")}
After={UNIT}
[Service]
Restart=always
RestartSec=5
ExecStart={command}
[Install]
WantedBy=multi-user.target
{DELIM}
"""
    return f"""#!/bin/bash
# selfhost: {headline}
# Generated by selfhost.stack.boot_script. Secrets are fetched from the cloud's secret store at each start.
set -euo pipefail
mkdir -p /opt/selfhost {HF_CACHE}
{prelude}
{auth_install.install_shell(auth_install.CONTAINER_DIR)}
cat > /opt/selfhost/fetch-secrets.sh <<'{DELIM}'
#!/bin/bash
set -euo pipefail
umask 077
mkdir -p /run/selfhost
tmp=$(mktemp /run/selfhost/env.XXXXXX)
trap 'rm -f "$tmp"' EXIT
{fetch_lines}
mv "$tmp" {SECRETS_FILE}
{DELIM}
chmod 700 /opt/selfhost/fetch-secrets.sh
cat > /etc/systemd/system/{UNIT} <<'{DELIM}'
[Unit]
Description=vLLM OpenAI-compatible server (selfhost)
After=docker.service network-online.target
Wants=network-online.target
Requires=docker.service
StartLimitIntervalSec=0
[Service]
Restart=always
RestartSec=15
TimeoutStartSec=0
{started}ExecStartPre=/opt/selfhost/fetch-secrets.sh
{"ExecStartPre=/opt/selfhost/weights.sh restore" + chr(10) if weights else ""}ExecStartPre=-/usr/bin/docker rm -f vllm
ExecStart={exec_start}
{stop}
[Install]
WantedBy=multi-user.target
{DELIM}
{probes}{watchdog}{health}
systemctl daemon-reload
systemctl enable --now {units}
"""


def exec_start_argv(script: str) -> list[str]:
    """The vLLM unit's ExecStart as argv (for tests and `selfhost` inspection)."""
    import shlex

    line = next(x for x in script.splitlines() if x.startswith("ExecStart=/usr/bin/docker run"))
    return [a.replace("$$", "$").replace("%%", "%") for a in shlex.split(line[len("ExecStart=") :])]
