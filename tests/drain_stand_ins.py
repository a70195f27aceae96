"""Stand-ins for the drain handlers' tests (tests/test_drain_handlers.py): the EC2 instance metadata service
(IMDSv2) and GCE's metadata server, a recording front for the AWS APIs in front of a moto server, and
systemd/vLLM on the VM (a `systemctl` on PATH that SIGTERMs a process which takes a while to finish).

Everything listens on 127.0.0.1, on an ephemeral port, and is stopped by the test. Every event (an AWS
call, a systemctl call, vLLM's SIGTERM and its exit) is appended, in the order it happens, to one log file.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Auto Scaling calls moto does not implement (5.x): answered here and recorded.
LIFECYCLE_ACTIONS = ("CompleteLifecycleAction", "RecordLifecycleActionHeartbeat")
AS_NS = "http://autoscaling.amazonaws.com/doc/2011-01-01/"


def append(log: Path, line: str) -> None:
    with log.open("a") as f:
        f.write(line + "\n")


class Server:
    """A ThreadingHTTPServer on 127.0.0.1:0 in a thread; `url`, `stop()`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, code: int, body: bytes = b"", ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def imds(state: dict[str, str]) -> Server:
    """IMDSv2: PUT /latest/api/token, then GET /latest/meta-data/<path> with the token header. `state` maps
    a metadata path to its value (absent: 404, as IMDS answers while there is no notice)."""

    class Handler(_Quiet):
        def do_PUT(self) -> None:
            if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
                self.reply(200, b"token-123")
            else:
                self.reply(400)

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != "token-123":
                self.reply(401)
                return
            key = self.path.removeprefix("/latest/meta-data/")
            value = state.get(key)
            self.reply(200, value.encode()) if value is not None else self.reply(404)

    return Server(Handler)


def gce_metadata(state: dict[str, str]) -> Server:
    """GCE's metadata server: GET /computeMetadata/v1/<path> with `Metadata-Flavor: Google`."""

    class Handler(_Quiet):
        def do_GET(self) -> None:
            if self.headers.get("Metadata-Flavor") != "Google":
                self.reply(403)
                return
            value = state.get(self.path.removeprefix("/computeMetadata/v1/"))
            self.reply(200, value.encode()) if value is not None else self.reply(404)

    return Server(Handler)


def aws_front(moto_url: str, log: Path, calls: list[dict[str, str]]) -> Server:
    """The AWS endpoint the CLI is pointed at: records each call's Action (in the log and in `calls`), answers
    the lifecycle actions moto lacks, and forwards everything else to the moto server unchanged."""

    class Handler(_Quiet):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params = {k: v[0] for k, v in urllib.parse.parse_qs(body.decode()).items()}
            action = params.get("Action") or self.headers.get("X-Amz-Target", "?")
            calls.append(params)
            append(log, f"aws {action}")
            if action in LIFECYCLE_ACTIONS:
                xml = (
                    f'<{action}Response xmlns="{AS_NS}"><{action}Result/>'
                    f"<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></{action}Response>"
                )
                self.reply(200, xml.encode(), "text/xml")
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            request = urllib.request.Request(moto_url + self.path, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    self.reply(resp.status, resp.read(), resp.headers.get("Content-Type", "text/xml"))
            except urllib.error.HTTPError as err:
                self.reply(err.code, err.read(), err.headers.get("Content-Type", "text/xml"))

    return Server(Handler)


FAKE_VLLM = """import signal, sys, time
log, drain_s = sys.argv[1], float(sys.argv[2])
def note(text):
    with open(log, "a") as f:
        f.write(text + "\\n")
def term(*_):
    note("vllm SIGTERM")
    time.sleep(drain_s)  # the requests in flight finish
    note("vllm drained")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
note("vllm serving")
while True:
    time.sleep(0.1)
"""


def systemd_bin(bin_dir: Path, log: Path, pid_file: Path) -> None:
    """`systemctl` on PATH: records its arguments; `stop vllm.service` SIGTERMs the fake vLLM and waits for
    it to exit (systemd running the unit's ExecStop, docker stop -t, until the container is gone)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "systemctl"
    script.write_text(
        f"""#!/bin/bash
echo "systemctl $*" >> {log}
if [ "$1" = stop ] && [[ " $* " == *" vllm.service "* ]]; then
  pid=$(cat {pid_file})
  kill -TERM "$pid"
  # until it has exited (a zombie of the test process counts as gone)
  while kill -0 "$pid" 2>/dev/null && [ "$(ps -o stat= -p "$pid" | cut -c1)" != Z ]; do sleep 0.05; done
fi
exit 0
"""
    )
    script.chmod(0o755)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def events(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def metric_values(cw: Any, namespace: str, name: str, group: str) -> list[float]:
    """The values moto's CloudWatch holds for one metric of one group."""
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    stats = cw.get_metric_statistics(
        Namespace=namespace,
        MetricName=name,
        Dimensions=[{"Name": "AutoScalingGroupName", "Value": group}],
        StartTime=now - dt.timedelta(hours=1),
        EndTime=now + dt.timedelta(hours=1),
        Period=60,
        Statistics=["Maximum"],
    )
    return [p["Maximum"] for p in stats["Datapoints"]]
