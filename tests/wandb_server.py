"""A stand-in W&B server for the tests, on the loopback: the part of W&B's API that the real ``wandb``
client uses for ``wandb sweep``, ``wandb agent`` and a run that logs online.

No W&B server can run on the project's machines (W&B Server is a licensed container image), so the
tests point the real client at this one the documented way: ``WANDB_BASE_URL=http://127.0.0.1:PORT``
and a dummy ``WANDB_API_KEY``. The next run's parameters come from W&B's own sweep engine (the PyPI
package ``sweeps``, which W&B's server runs), fed the states and metrics that the earlier runs
reported through their file streams, as the real server feeds it.

What it answers (anything else is recorded in ``unknown``, which the tests check is empty, and
answered with null data), checked against the client of wandb 0.31.0 (the newest) and 0.17.0 (the
floor in .ci/floors.txt):

- GraphQL (``POST /graphql``), by top-level field: ``viewer``, ``serverInfo``, ``entity``,
  ``upsertSweep`` (``wandb sweep``: the sweep from its YAML), ``project { sweep }`` (the agent reads
  the sweep's command), ``createAgent``, ``agentHeartbeat`` (hands out the engine's next run, or
  ``exit`` once a grid is done), ``model { bucket }`` (a run's resume status), ``upsertBucket`` (the
  run's upsert: config, sweep, state), ``project { run }`` (a run's stop status), ``createRunFiles``
  (upload URLs back to this server), and ``__type`` schema probes (0.17.0), answered with the
  queries and mutations listed here. ``prepareFiles``, ``markRunFilesUploaded`` and
  ``clientIDMapping`` are answered too, though neither client called them in the tests.
- ``POST /files/<entity>/<project>/<run>/file_stream``: the run's history, summary, console output
  and, at the end, its exit code.
- ``PUT`` to an upload URL: the file is accepted and dropped; ``POST /sdk/otel/...`` (the newest
  client's own telemetry): accepted and dropped.

A run's state, as this server keeps it (W&B's own rules are not published; these are the states its
sweep engine reads): ``pending`` when the agent is handed it, ``running`` once it upserts (again after
a resume, when it asked for its resume status first), ``finished`` or ``failed`` from the exit code
its file stream reports when it ends, and, for a run that leaves the agent's heartbeat without
reporting an end, ``failed`` if it never started logging (its command failed before ``wandb.init``)
and ``crashed`` if it did.
"""

from __future__ import annotations

import gzip
import json
import re
import secrets
import string
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import yaml

ENTITY = "dgmlab-tests"
API_KEY = "local-" + "0" * 40  # the client checks only the length and format of a key


def new_id(length: int = 8) -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(length))


@dataclass
class Run:
    name: str
    entity: str
    project: str
    sweep: str | None = None
    proposal: dict[str, Any] = field(default_factory=dict)  # the parameters the sweep handed out
    config: dict[str, Any] = field(default_factory=dict)  # the config the run itself upserted
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)
    state: str = "pending"
    exitcode: int | None = None
    upserts: int = 0
    starts: int = 0  # 2 and more: resumed
    resuming: bool = False

    def node(self) -> dict[str, Any]:
        return {
            "id": self.name,
            "name": self.name,
            "displayName": self.name,
            "state": self.state,
            "config": json.dumps({k: {"value": v} for k, v in (self.proposal or self.config).items()}),
            "exitcode": self.exitcode,
            "heartbeatAt": None,
            "shouldStop": False,
            "failed": self.state == "failed",
            "stopped": False,
            "running": self.state == "running",
            "summaryMetrics": json.dumps(self.summary),
            "sampledHistory": [self.history],
            "historyLineCount": len(self.history),
            "logLineCount": len(self.output),
            "eventsLineCount": 0,
            "historyTail": json.dumps([json.dumps(h) for h in self.history[-1:]]),
            "eventsTail": "[]",
            "notes": None,
            "wandbConfig": json.dumps({}),
            "sweepName": self.sweep,
            "project": None,
        }


@dataclass
class Sweep:
    name: str
    entity: str
    project: str
    config: dict[str, Any]
    state: str = "RUNNING"
    runs: list[str] = field(default_factory=list)
    # What the engine was given for each proposal: [(run name, state, metric), ...] of the runs before it.
    engine_inputs: dict[str, list[tuple[str, str, Any]]] = field(default_factory=dict)


@dataclass
class Agent:
    id: str
    sweep: str
    runs: list[str] = field(default_factory=list)


class StandInServer:
    """``with StandInServer() as server: server.url``; its state is read from the test's thread."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.sweeps: dict[str, Sweep] = {}
        self.runs: dict[str, Run] = {}
        self.agents: dict[str, Agent] = {}
        self.calls: dict[str, int] = {}  # each call answered, by name, with its count
        self.unknown: list[str] = []
        self.lock = threading.RLock()
        self._http: ThreadingHTTPServer | None = None

    # --- life -----------------------------------------------------------------------------------
    def start(self, port: int = 0) -> "StandInServer":
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._http = _HTTPServer(("127.0.0.1", port), handler)
        self._http.daemon_threads = True
        self._url = f"http://127.0.0.1:{self._http.server_address[1]}"
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> "StandInServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return self._url

    def env(self) -> dict[str, str]:
        """The client's settings for this server (W&B's documented environment variables)."""
        return {"WANDB_BASE_URL": self.url, "WANDB_API_KEY": API_KEY, "WANDB_ENTITY": ENTITY, "WANDB_MODE": "online"}

    def count(self, name: str) -> None:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1

    # --- GraphQL ----------------------------------------------------------------------------------
    def graphql(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for alias, name, arguments in top_level_fields(query):
            if name == "__type":  # a schema probe: which of this server's calls the type has
                self.count(name)
                data[alias] = schema_type(re.search(r'name:\s*"(\w+)"', arguments).group(1))
                continue
            resolver = getattr(self, f"q_{name.lstrip('_')}", None)
            if resolver is None:
                with self.lock:
                    self.unknown.append(name)
                data[alias] = None
                continue
            self.count(name)
            with self.lock:
                data[alias] = resolver(variables, query)
        return {"data": data}

    def q_schema(self, variables, query):
        return {"queryType": {"fields": []}, "mutationType": {"fields": []}, "types": []}

    def q_viewer(self, variables, query):
        return {
            "id": "viewer",
            "entity": ENTITY,
            "username": ENTITY,
            "email": "tests@127.0.0.1",
            "admin": False,
            "flags": "{}",
            "photoUrl": None,
            "teams": {"edges": []},
            "apiKeys": {"edges": []},
            "defaultFramework": None,
            "userInfo": None,
        }

    def q_serverInfo(self, variables, query):
        return {"features": [], "cliVersionInfo": {}, "latestLocalVersionInfo": None, "frontendHost": self.url}

    def q_entity(self, variables, query):
        return {"id": ENTITY, "name": ENTITY, "xxhashDigestsEnabled": False, "organization": None}

    def q_clientIDMapping(self, variables, query):
        return None

    def project_of(self, entity: str | None, project: str | None) -> dict[str, Any]:
        entity = entity or ENTITY
        return {"id": f"{entity}/{project}", "name": project, "entity": {"id": entity, "name": entity}}

    # sweeps and agents
    def q_upsertSweep(self, variables, query):
        entity = variables.get("entityName") or ENTITY
        project = variables.get("projectName") or "uncategorized"
        sweep = self.sweeps.get(variables.get("id") or "")
        if sweep is None:
            config = yaml.safe_load(variables["config"])
            sweep = Sweep(new_id(), entity, config.get("project") or project, config)
            self.sweeps[sweep.name] = sweep
        if variables.get("state"):
            sweep.state = variables["state"]
        return {
            "sweep": {"id": sweep.name, "name": sweep.name, "state": sweep.state, **self._project(sweep)},
            "configValidationWarnings": [],
        }

    def _project(self, sweep: Sweep) -> dict[str, Any]:
        return {"project": self.project_of(sweep.entity, sweep.project)}

    def sweep_node(self, sweep: Sweep) -> dict[str, Any]:
        return {
            "id": sweep.name,
            "name": sweep.name,
            "displayName": sweep.config.get("name"),
            "method": sweep.config.get("method"),
            "state": sweep.state,
            "description": None,
            "config": yaml.safe_dump(sweep.config),
            "createdAt": "2026-01-01T00:00:00",
            "heartbeatAt": None,
            "updatedAt": None,
            "earlyStopJobRunning": False,
            "bestLoss": None,
            "controller": None,
            "controllerRunName": None,
            "scheduler": None,
            "runCount": len(sweep.runs),
            "runs": {"edges": [{"node": self.runs[r].node()} for r in sweep.runs]},
        }

    def q_project(self, variables, query):
        name = variables.get("project") or variables.get("projectName")
        entity = variables.get("entity") or variables.get("entityName")
        found = self.project_of(entity, name)
        sweep_name = variables.get("sweep") or variables.get("sweepName")
        if sweep_name is not None:
            sweep = self.sweeps.get(sweep_name.split("/")[-1])
            found["sweep"] = self.sweep_node(sweep) if sweep else None
        run_name = variables.get("run") or variables.get("name")
        if run_name is not None and run_name != name:
            run = self.runs.get(run_name)
            found["run"] = run.node() if run else None
        return found

    def q_createAgent(self, variables, query):
        sweep = variables["sweep"].split("/")[-1]
        if sweep not in self.sweeps:
            raise GraphQLError(f"sweep {sweep} not found")
        agent = Agent(new_id(), sweep)
        self.agents[agent.id] = agent
        return {"agent": {"id": agent.id, "name": agent.id}}

    def q_agentHeartbeat(self, variables, query):
        agent = self.agents.get(variables["id"])
        if agent is None:
            raise GraphQLError(f"agent {variables['id']} not found")
        running = set(json.loads(variables.get("runState") or "{}"))
        for name in agent.runs:
            run = self.runs[name]
            if name not in running and run.state in ("pending", "running"):
                # It left the agent without reporting an end through its file stream.
                run.state = "failed" if run.upserts == 0 else "crashed"
        commands: list[dict[str, Any]] = []
        sweep = self.sweeps[agent.sweep]
        if not running and sweep.state == "RUNNING":
            run = self.propose(sweep)
            if run is None:
                sweep.state = "FINISHED"
            else:
                agent.runs.append(run.name)
                args = {k: {"value": v} for k, v in run.proposal.items()}
                commands.append({"type": "run", "run_id": run.name, "args": args, "program": sweep.config["program"]})
        if not running and sweep.state == "FINISHED":
            commands.append({"type": "exit"})
        return {"agent": {"id": agent.id}, "commands": json.dumps(commands)}

    def propose(self, sweep: Sweep) -> Run | None:
        """The engine's next run, given every run of the sweep so far (the real server's engine)."""
        import numpy as np
        import sweeps as engine

        metric = sweep.config.get("metric", {}).get("name")
        runs = [self.runs[r] for r in sweep.runs]
        engine_runs = [
            engine.SweepRun(
                name=r.name,
                state=r.state,
                config={k: {"value": v} for k, v in r.proposal.items()},
                summaryMetrics=dict(r.summary),  # the alias: sweeps 0.2 knows no other name
                sampledHistory=[h for h in r.history if metric in h],
            )
            for r in runs
        ]
        np.random.seed(self.seed * 100_003 + len(runs))  # the engine draws from numpy's global generator
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proposal = engine.next_run(sweep.config, engine_runs, validate=True)
        if proposal is None:
            return None
        run = Run(new_id(), sweep.entity, sweep.project, sweep=sweep.name)
        run.proposal = {k: plain(v["value"]) for k, v in proposal.config.items()}
        sweep.engine_inputs[run.name] = [(r.name, r.state, r.summary.get(metric)) for r in runs]
        sweep.runs.append(run.name)
        self.runs[run.name] = run
        return run

    # runs
    def q_model(self, variables, query):  # RunResumeStatus: the run, if it exists
        found = self.project_of(variables.get("entity"), variables.get("project"))
        run = self.runs.get(variables.get("name") or "")
        found["bucket"] = run.node() if run is not None and run.upserts else None
        if run is not None and run.upserts:
            run.resuming = True  # its next upsert continues it
        return found

    def q_upsertBucket(self, variables, query):
        name = variables.get("name") or variables.get("id") or new_id()
        run = self.runs.get(name)
        inserted = run is None
        if run is None:
            run = Run(name, variables.get("entity") or ENTITY, variables.get("project") or "uncategorized")
            self.runs[name] = run
        if variables.get("sweep"):
            run.sweep = variables["sweep"]
        if variables.get("config"):
            config = json.loads(variables["config"])
            run.config = {k: v.get("value") if isinstance(v, dict) else v for k, v in config.items()}
        if variables.get("summaryMetrics"):
            run.summary.update(json.loads(variables["summaryMetrics"]))
        if run.resuming or run.state == "pending":  # started, or resumed after it ended (a requeued job)
            run.state, run.exitcode, run.resuming = "running", None, False
            run.starts += 1
        run.upserts += 1
        node = run.node()
        node["project"] = self.project_of(run.entity, run.project)
        return {"bucket": node, "inserted": inserted, "updateAvailable": False}

    def q_createRunFiles(self, variables, query):
        files = variables.get("files") or []
        run = variables.get("run") or variables.get("name")
        return {
            "runID": run,
            "uploadHeaders": [],
            "files": [{"name": f, "uploadUrl": f"{self.url}/upload/{run}/{f}"} for f in files],
        }

    def q_prepareFiles(self, variables, query):
        files = variables.get("fileSpecs") or []
        return {
            "files": {
                "edges": [
                    {"node": {"id": f["name"], "name": f["name"], "displayName": f["name"], "digest": None,
                              "uploadUrl": f"{self.url}/upload/{f.get('run')}/{f['name']}", "uploadHeaders": []}}
                    for f in files
                ]
            }
        }  # fmt: skip

    def q_markRunFilesUploaded(self, variables, query):
        return {"success": True}

    # --- the file stream --------------------------------------------------------------------------
    def file_stream(self, entity: str, project: str, name: str, payload: dict[str, Any]) -> dict[str, Any]:
        self.count("file_stream")
        with self.lock:
            run = self.runs.get(name)
            if run is None:
                run = self.runs[name] = Run(name, entity, project)
            for file_name, chunk in (payload.get("files") or {}).items():
                lines = chunk.get("content") or []
                if file_name == "wandb-history.jsonl":
                    offset = chunk.get("offset", len(run.history))
                    run.history[offset:] = [json.loads(line) for line in lines]
                elif file_name == "wandb-summary.json" and lines:
                    run.summary = json.loads(lines[-1])
                elif file_name == "output.log":
                    run.output.extend(lines)
            if payload.get("complete"):
                run.exitcode = payload.get("exitcode")
                run.state = "finished" if run.exitcode == 0 else "failed"
        return {"exitcode": None, "limits": {}}


class GraphQLError(Exception):
    pass


QUERIES = ("viewer", "serverInfo", "project", "model", "entity", "clientIDMapping")
MUTATIONS = ("upsertSweep", "createAgent", "agentHeartbeat", "upsertBucket", "createRunFiles", "prepareFiles",
             "markRunFilesUploaded")  # fmt: skip


def schema_type(name: str) -> dict[str, Any]:
    """``__type(name: ...)``: the client probes the schema for optional calls and fields; this server
    lists the queries and mutations it answers, and no optional fields of any other type."""
    fields = {"Query": QUERIES, "Mutation": MUTATIONS}.get(name, ())
    return {"name": name, "fields": [{"name": f} for f in fields], "inputFields": []}


def plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") and not isinstance(value, (list, dict)) else value


def top_level_fields(query: str) -> list[tuple[str, str, str]]:
    """(alias, field, arguments) of each top-level selection of a GraphQL document's first operation."""
    body = re.sub(r"#[^\n]*", "", query)
    start = body.index("{")
    depth, paren, fields, i = 0, 0, [], start
    token = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?::\s*([A-Za-z_][A-Za-z0-9_]*))?")
    while i < len(body):
        c = body[i]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        elif c == "(":
            paren += 1
        elif c == ")":
            paren -= 1
        elif c == '"' and paren:
            i = body.index('"', i + 1)
        elif depth == 1 and paren == 0 and (c.isalpha() or c == "_"):
            m = token.match(body, i)
            alias, name = (m.group(1), m.group(2)) if m.group(2) else (m.group(1), m.group(1))
            i = m.end()
            arguments = ""
            rest = body[i:].lstrip()
            if rest.startswith("("):
                start_args = body.index("(", i)
                end_args = body.index(")", start_args)
                arguments, i = body[start_args + 1 : end_args], end_args + 1
            fields.append((alias, name, arguments))
            continue
        i += 1
    return fields


class _HTTPServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A client that hangs up (or a server stopped mid-request) is no error of the server's.
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server_state: StandInServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet: the tests read the server's state instead
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        return body

    def _reply(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        state = self.server_state
        body = self._body()
        path = self.path.split("?")[0]
        if path.endswith("/graphql"):
            request = json.loads(body or b"{}")
            requests = request if isinstance(request, list) else [request]
            answers = []
            for r in requests:
                try:
                    answers.append(state.graphql(r.get("query", ""), r.get("variables") or {}))
                except GraphQLError as e:
                    answers.append({"data": None, "errors": [{"message": str(e)}]})
            self._reply(200, answers if isinstance(request, list) else answers[0])
            return
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/file_stream", path)
        if match:
            self._reply(200, state.file_stream(*match.groups(), json.loads(body or b"{}")))
            return
        if path.startswith("/sdk/otel/"):  # wandb-core's own telemetry: accepted, not kept
            state.count("otel")
        else:
            with state.lock:
                state.unknown.append(f"POST {path}")
        self._reply(200, {})

    def do_PUT(self) -> None:
        self._body()
        self.server_state.count("upload")
        self._reply(200, {})

    def do_GET(self) -> None:
        with self.server_state.lock:
            self.server_state.unknown.append(f"GET {self.path}")
        self._reply(200, {})
