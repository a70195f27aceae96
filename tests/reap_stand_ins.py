"""Local stand-ins for `selfhost reap` tests, answering with the shapes of the real APIs (127.0.0.1 only).

    python tests/reap_stand_ins.py gcp --port P --state FILE     # Compute Engine REST v1 + an OAuth token endpoint
    python tests/reap_stand_ins.py runpod --port P --state FILE  # RunPod GraphQL (myPods, podTerminate)

The state file is JSON: {"instances" | "pods": [...], "requests": [...]}. The server reads it on each request and
writes it back after a change, so the test sets up the inventory and reads what was asked and deleted.
"""

from __future__ import annotations

import argparse
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

TOKEN = "stand-in-access-token"
LOCK = threading.Lock()


def make_handler(kind: str, state_path: Path, api_key: str | None):
    def load() -> dict:
        return json.loads(state_path.read_text())

    def save(state: dict) -> None:
        state_path.write_text(json.dumps(state, indent=1))

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet
            pass

        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _record(self, state: dict, **extra) -> None:
            state.setdefault("requests", []).append({"method": self.command, "path": self.path, **extra})

        # --- Compute Engine ------------------------------------------------------------------------------
        def _gcp(self) -> None:
            url = urlparse(self.path)
            if self.command == "POST" and url.path == "/token":
                self._body()
                return self._send(200, {"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"})
            bearer = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
            # the token from /token, or a self-signed service-account JWT (what Google's clients send by default)
            if bearer != TOKEN and not (bearer.startswith("ey") and bearer.count(".") == 2):
                return self._send(401, {"error": {"code": 401, "message": "Request had invalid credentials."}})
            with LOCK:
                state = load()
                self._record(state)
                m = re.fullmatch(r"/compute/v1/projects/([^/]+)/aggregated/instances", url.path)
                if self.command == "GET" and m:
                    query = parse_qs(url.query)
                    flt = query.get("filter", [""])[0]
                    label = re.fullmatch(r"labels\.([a-z0-9_-]+):\*", flt)
                    items: dict = {}
                    for inst in state["instances"]:
                        if label and label.group(1) not in inst.get("labels", {}):
                            continue
                        zone = inst["zone"].rsplit("/", 1)[-1]
                        items.setdefault(f"zones/{zone}", {"instances": []})["instances"].append(inst)
                    items.setdefault(
                        "zones/europe-west4-b",
                        {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": "There are no results for scope"}},
                    )
                    save(state)
                    return self._send(
                        200,
                        {
                            "kind": "compute#instanceAggregatedList",
                            "id": f"projects/{m.group(1)}/aggregated/instances",
                            "items": items,
                            "selfLink": f"https://www.googleapis.com/compute/v1/projects/{m.group(1)}/aggregated/instances",
                        },
                    )
                m = re.fullmatch(
                    r"/compute/v1/projects/([^/]+)/(zones|regions)/([^/]+)/(instances|instanceGroupManagers)/([^/]+)",
                    url.path,
                )
                if self.command == "DELETE" and m:
                    project, scope, where, kind_, name = m.groups()
                    before = len(state["instances"])
                    # a group's instances name it in metadata created-by: .../{zones|regions}/W/instanceGroupManagers/N
                    made_by = f"/{scope}/{where}/instanceGroupManagers/{name}"

                    def made_by_group(inst: dict) -> bool:
                        items = (inst.get("metadata") or {}).get("items", [])
                        return any(i["key"] == "created-by" and i["value"].endswith(made_by) for i in items)

                    def this_instance(inst: dict) -> bool:
                        return scope == "zones" and inst["name"] == name and inst["zone"].endswith(f"/zones/{where}")

                    gone = made_by_group if kind_ == "instanceGroupManagers" else this_instance
                    state["instances"] = [i for i in state["instances"] if not gone(i)]
                    save(state)
                    if len(state["instances"]) == before:
                        return self._send(
                            404, {"error": {"code": 404, "message": f"The resource '{name}' was not found"}}
                        )
                    scope_url = f"https://www.googleapis.com/compute/v1/projects/{project}/{scope}/{where}"
                    return self._send(
                        200,
                        {
                            "kind": "compute#operation",
                            "id": "7",
                            "name": f"operation-delete-{name}",
                            scope[:-1]: scope_url,
                            "operationType": "delete",
                            "targetLink": f"{scope_url}/{kind_}/{name}",
                            "status": "DONE",
                            "progress": 100,
                        },
                    )
                save(state)
            return self._send(404, {"error": {"code": 404, "message": "not found"}})

        # --- RunPod GraphQL ---------------------------------------------------------------------------------
        def _runpod(self) -> None:
            if self.command != "POST" or urlparse(self.path).path != "/graphql":
                return self._send(404, {"errors": [{"message": "not found"}]})
            if self.headers.get("Authorization") != f"Bearer {api_key}":
                return self._send(401, {"errors": [{"message": "Unauthorized"}]})
            query = json.loads(self._body())["query"]
            with LOCK:
                state = load()
                self._record(state, query=" ".join(query.split())[:200])
                if "myPods" in query:
                    save(state)
                    return self._send(200, {"data": {"myself": {"pods": state["pods"]}}})
                m = re.search(r'podTerminate\(input:\s*\{\s*podId:\s*"([^"]+)"', query)
                if m:
                    state["pods"] = [p for p in state["pods"] if p["id"] != m.group(1)]
                    save(state)
                    return self._send(200, {"data": {"podTerminate": None}})
                save(state)
            return self._send(200, {"errors": [{"message": "unsupported query in the stand-in"}]})

        def do_GET(self) -> None:
            self._gcp() if kind == "gcp" else self._runpod()

        do_POST = do_GET
        do_DELETE = do_GET

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=("gcp", "runpod"))
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--state", type=Path, required=True)
    ap.add_argument("--api-key")
    a = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", a.port), make_handler(a.kind, a.state, a.api_key))
    server.serve_forever()


if __name__ == "__main__":
    main()
