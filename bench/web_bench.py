"""Load on `fleetgate serve`: 50 concurrent readers and 5 writers on loopback against one server process.

Readers are `wrk` (50 connections, one thread) cycling through asset pages, asset details, the
quarantine and the log checkpoint with an auditor's token. Writers are 5 Python threads, each an
upload agent posting small, distinct drops (a tar with one procurement table): the server spools it
and answers 202 with a job, the server's ingest worker (its child process) ingests it, and the agent
waits for its job (`GET /jobs/{id}?wait=`) before it posts the next. A write is acknowledged when
its job is done with the file landed. After each run, once the spool has drained, the catalog and
the log are counted: every accepted job is exactly one ingest run and one asset (no lost or doubled
writes), and every write request that passed authentication is one `web_request` log entry. Each
run starts from its own copy of the same home (a run's writes would add pages for the next run's
readers to read), and the server is warmed first (each path and each token once), as one that has
been up a while is. The
peer, measured in the same run with the same wrk settings, is the same stack (uvicorn + FastAPI)
serving the same JSON body from memory with no authentication or catalog: the floor this machine
sets for one Python server process.

Run alone: `python bench/web_bench.py --runs 3 --seconds 60` (needs `wrk`: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import httpx
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

READERS = 50
WRITERS = int(os.environ.get("FLEETGATE_BENCH_WRITERS", "5"))
PEER = """
import json, sys
from fastapi import FastAPI
from fastapi.responses import Response
import uvicorn
body = open(sys.argv[1], "rb").read()
app = FastAPI()
@app.get("/api/v1/assets")
def assets() -> Response:
    return Response(body, media_type="application/json")
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def _home(work: Path):  # noqa: ANN202 - a web_helpers.Served
    from fleetgate.domain import Role
    from fleetgate.sample import SampleSpec, generate_sample
    from fleetgate.services import Services
    from fleetgate.workspace import Workspace
    from people import new_actor
    from web_helpers import build_home

    drop = work / "drop"
    generate_sample(drop, SampleSpec(vehicles=4, clips=2, seed=5, video_seconds=1.0, drive_seconds=8.0))
    served = build_home(work, drop)
    with Workspace.open(served.home) as ws:
        services = Services(ws)
        for n in range(WRITERS):
            agent = new_actor(work / "agents", f"Upload Agent {n}")
            services.principals.add(agent.name, Role.ingest, agent.signer.public_key, served.team.admin)
            served.tokens[agent.name] = services.principals.issue_token(agent.name, served.team.admin).secret
    return served


def _copy(master, dest: Path):  # noqa: ANN001, ANN202 - a web_helpers.Served
    """Each run on its own copy of the same home: a run's writes add assets, and with them asset pages to the
    next run's readers (every page invalidated by each ingest), so runs on one home measure different loads."""
    import dataclasses

    shutil.copytree(master.home.parent, dest)
    return dataclasses.replace(master, home=dest / master.home.name)


def _drop_tar(writer: int, n: int) -> bytes:
    """A small, distinct drop: one procurement table whose purchase order ids name the writer and the request."""
    table = pa.table({"po_id": [f"PO-BENCH-{writer}-{n:06d}"], "supplier": ["bench"], "part_no": ["LAMP-HEAD-LED"],
                      "quantity": pa.array([n], pa.int64()), "unit_price_cny": [1.0],
                      "order_date": pa.array([dt.datetime(2026, 8, 1, tzinfo=dt.UTC)], pa.timestamp("us", tz="UTC"))})
    data = io.BytesIO()
    pq.write_table(table, data)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("tables/procurement.parquet")
        info.size = len(data.getvalue())
        tar.addfile(info, io.BytesIO(data.getvalue()))
    return out.getvalue()


class Writer(threading.Thread):
    """An upload agent: posts a drop (202: a job), then waits for its job to finish (`GET /jobs/{id}?wait=`)
    before the next one, as an agent that wants to know its drop landed would."""

    def __init__(self, url: str, token: str, index: int, stop: threading.Event, run: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.index, self.stop, self.run_no = url, token, index, stop, run
        self.accept_latencies: list[float] = []  # POST until its 202
        self.latencies: list[float] = []  # POST until the job is done: the drop is in the catalog
        self.accepted: list[str] = []  # job ids answered with 202
        self.ok: list[str] = []  # job ids done with the one file landed
        self.errors = 0
        self.sent = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/x-tar"}
        with httpx.Client(base_url=self.url, timeout=60) as client:
            n = 0
            while not self.stop.is_set():
                name = f"bench-r{self.run_no}-w{self.index}-{n:06d}"
                body = _drop_tar(self.index, n + 1_000_000 * self.run_no)
                start = time.perf_counter()
                try:
                    self._one(client, headers, name, body, start)
                except httpx.HTTPError:
                    self.errors += 1
                n += 1

    def _one(self, client: httpx.Client, headers: dict[str, str], name: str, body: bytes, start: float) -> None:
        r = client.post("/api/v1/drops", params={"name": name + ".tar"}, headers=headers, content=body)
        self.sent += 1
        if r.status_code != 202:
            self.errors += 1
            return
        self.accept_latencies.append(time.perf_counter() - start)
        job = r.json()["job_id"]
        self.accepted.append(job)
        while True:  # the job finishes even after the stop: the agent waits for what it sent
            view = client.get(r.headers["location"], params={"wait": 30}, headers=headers).json()
            if view["status"] in ("done", "failed"):
                break
        self.latencies.append(time.perf_counter() - start)
        if view["status"] == "done" and view["report"]["landed"] == 1:
            self.ok.append(job)
        else:
            self.errors += 1


def _wrk_script(folder: Path, token: str, paths: list[str]) -> Path:
    script = folder / "readers.lua"
    script.write_text(
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "local paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n"
        "local i = 0\n"
        "request = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n",
        encoding="utf-8")
    return script


def _wrk(url: str, seconds: int, script: Path | None, path: str = "/") -> dict[str, float]:
    cmd = ["wrk", "-t1", f"-c{READERS}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if script is not None:
        cmd += ["-s", str(script)]
    out = subprocess.run(cmd + [url + path], capture_output=True, text=True, check=True).stdout
    return _parse_wrk(out)


def _ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def _parse_wrk(out: str) -> dict[str, float]:
    lat = {p: _ms(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "p50": lat["50"], "p99": lat["99"],
            "requests": requests, "errors": (int(non2xx.group(1)) if non2xx else 0)
            + (sum(int(x) for x in sock.groups()) if sock else 0)}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_queue_seconds(pid: int) -> float:
    """How long the process's main thread (the server's event loop) has waited, runnable, for a CPU."""
    return int(Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()[1]) / 1e9


def _drained(home: Path, timeout: float = 300) -> float:
    """Wait until no accepted upload waits in the spool; the seconds it took."""
    start = time.monotonic()
    while any((home / "uploads" / "queue").glob("job_*")):
        if time.monotonic() - start > timeout:
            raise RuntimeError("the ingest worker did not drain the spool")
        time.sleep(0.1)
    return time.monotonic() - start


def _count_writes(home: Path, run: int) -> tuple[int, int, int]:
    """(ingest runs, assets, /drops request entries) of this run, from the catalog and the log."""
    import sqlalchemy as sa

    from fleetgate.store import Catalog

    catalog = Catalog(f"sqlite:///{home / 'regions' / 'cn-shanghai' / 'catalog.db'}")
    prefix = f"bench-r{run}-w%"
    with catalog.snapshot() as conn:
        runs = conn.execute(sa.text("SELECT count(*) FROM ingest_runs WHERE source_drop LIKE :p"), {"p": prefix})
        runs = runs.scalar_one()
        assets = conn.execute(sa.text("SELECT count(*) FROM assets WHERE source_drop LIKE :p"), {"p": prefix})
        assets = assets.scalar_one()
        entries = conn.execute(sa.text("SELECT entry FROM log_entries WHERE entry LIKE '%\"type\":\"web_request\"%'"))
        drops = sum(1 for (text,) in entries if json.loads(text)["route"] == "/drops"
                    and f"bench-r{run}-" in json.dumps(json.loads(text)))
    catalog.close()
    return runs, assets, drops


def _server(served, port: int) -> subprocess.Popen:  # noqa: ANN001
    proc = subprocess.Popen([sys.executable, "-m", "fleetgate", "--home", str(served.home), "serve", "--port",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if not k.startswith("FLEETGATE_")})
    _wait(f"http://127.0.0.1:{port}/api/v1/health")
    return proc


def _wait(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(served, run: int, seconds: int, peer_seconds: int) -> dict[str, float]:  # noqa: ANN001
    from web_helpers import worker_pid

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _server(served, port)
    try:
        auditor = served.tokens[served.team.auditor.name]
        h = {"Authorization": f"Bearer {auditor}"}
        page = httpx.get(url + "/api/v1/assets", params={"limit": 20}, headers=h).json()
        total = page["total"]
        ids = [a["id"] for a in httpx.get(url + "/api/v1/assets", params={"limit": 200}, headers=h).json()["items"]]
        paths = ([f"/api/v1/assets?limit=20&offset={o}" for o in range(0, total, 20)] * 3
                 + [f"/api/v1/assets/{i}" for i in ids[:40]] + ["/api/v1/quarantine?limit=20"] * 4
                 + ["/api/v1/log/checkpoint"] * 4)
        script = _wrk_script(served.home.parent, auditor, paths)
        for path in dict.fromkeys(paths):  # warm: each view computed and each token verified (argon2) once
            httpx.get(url + path, headers=h)
        for n in range(WRITERS):
            httpx.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {served.tokens[f'Upload Agent {n}']}"})
        load_before = os.getloadavg()
        worker = worker_pid(proc.pid)
        cpu_before = _cpu_seconds(proc.pid)
        waited_before = _run_queue_seconds(proc.pid)
        worker_before = _cpu_seconds(worker) if worker else 0.0
        stop = threading.Event()
        writers = [Writer(url, served.tokens[f"Upload Agent {n}"], n, stop, run) for n in range(WRITERS)]
        for w in writers:
            w.start()
        reads = _wrk(url, seconds, script)
        load_during = os.getloadavg()
        server_cpu = _cpu_seconds(proc.pid) - cpu_before
        loop_waited = _run_queue_seconds(proc.pid) - waited_before
        worker_cpu = _cpu_seconds(worker) - worker_before if worker else 0.0
        stop.set()
        for w in writers:
            w.join(timeout=120)
        drain_s = _drained(served.home)  # lost and doubled are counted once every accepted job is done
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ingest_runs, assets, logged = _count_writes(served.home, run)
    acknowledged = sum(len(w.ok) for w in writers)
    accepted = sum(len(w.accepted) for w in writers)
    write_lat = sorted(x for w in writers for x in w.latencies)
    accept_lat = sorted(x for w in writers for x in w.accept_latencies)
    peer = _peer(served.home.parent, page, peer_seconds)
    served_requests = reads["requests"] + sum(w.sent for w in writers)
    return {"server_cpu_ms": 1000 * server_cpu / max(1, served_requests),
            "server_cpu_share": server_cpu / seconds, "loop_waited": loop_waited / seconds,
            "worker_cpu_share": worker_cpu / seconds,
            "worker_cpu_ms": 1000 * worker_cpu / max(1, acknowledged), "drain_s": drain_s,
            "accepted": accepted, "accept_p50": 1000 * accept_lat[len(accept_lat) // 2] if accept_lat else 0.0,
            "accept_p99": 1000 * accept_lat[int(len(accept_lat) * 0.99)] if accept_lat else 0.0,
            "reads_rps": reads["rps"], "read_p50": reads["p50"], "read_p99": reads["p99"],
            "read_errors": reads["errors"], "writes": acknowledged, "writes_rps": acknowledged / seconds,
            "write_p50": 1000 * write_lat[len(write_lat) // 2] if write_lat else 0.0,
            "write_p99": 1000 * write_lat[int(len(write_lat) * 0.99)] if write_lat else 0.0,
            "write_errors": sum(w.errors for w in writers), "lost": accepted - min(accepted, ingest_runs),
            "unfinished": accepted - acknowledged,
            "doubled": max(0, ingest_runs - accepted) + max(0, assets - ingest_runs),
            "unlogged": sum(w.sent for w in writers) - logged,
            "load_before": load_before[0], "load_during": load_during[0],
            "peer_rps": peer["rps"], "peer_p50": peer["p50"], "peer_p99": peer["p99"], "peer_cpu_ms": peer["cpu_ms"],
            "peer_waited": peer["waited"], "assets_at_start": total, "asset_pages": len(range(0, total, 20))}


def _peer(folder: Path, body: dict, seconds: int) -> dict[str, float]:
    (folder / "peer.json").write_text(json.dumps(body))
    (folder / "peer.py").write_text(PEER)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, str(folder / "peer.py"), str(folder / "peer.json"), str(port)])
    try:
        _wait(f"http://127.0.0.1:{port}/api/v1/assets")
        before, waited_before = _cpu_seconds(proc.pid), _run_queue_seconds(proc.pid)
        result = _wrk(f"http://127.0.0.1:{port}", seconds, None, "/api/v1/assets")
        waited = _run_queue_seconds(proc.pid) - waited_before
        return result | {"cpu_ms": 1000 * (_cpu_seconds(proc.pid) - before) / max(1, result["requests"]),
                         "waited": waited / seconds}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def bench_web(work: Path, runs: int, seconds: int = 60, peer_seconds: int = 30) -> list[str]:
    if shutil.which("wrk") is None:
        return ["## HTTP API under load", "", "Not measured: `wrk` is not installed (`apt-get install wrk`).", ""]
    work.mkdir(parents=True, exist_ok=True)
    master = _home(work / "master")
    results = [one_run(_copy(master, work / f"run-{n}"), n, seconds, peer_seconds) for n in range(runs)]

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    lost, doubled = sum(r["lost"] for r in results), sum(r["doubled"] for r in results)
    unlogged = sum(r["unlogged"] for r in results)
    unfinished = sum(r["unfinished"] for r in results)
    drained = ", ".join(f"{r['drain_s']:.1f}" for r in results)
    met = med("reads_rps") >= 500 and med("read_p99") < 100
    lines = [
        "## HTTP API under load",
        "",
        f"`fleetgate serve` (one uvicorn process, SQLite catalog in WAL mode; its ingest worker in a child process) "
        f"on loopback: {READERS} concurrent readers (`wrk -t1 -c{READERS}`, an auditor's token, cycling through "
        f"asset pages of 20, asset details, the quarantine and the log checkpoint) and {WRITERS} writers (upload "
        "agents each posting a distinct one-table drop to `POST /api/v1/drops`, 202, then waiting for its job "
        f"with `GET /api/v1/jobs/{{id}}?wait=30` before the next) for {seconds} s, {runs} runs, medians; each "
        f"run on its own copy of the same home ({med('assets_at_start'):.0f} assets: "
        f"{med('asset_pages'):.0f} asset pages), the server warmed first (each path and token once). Load "
        "generator, writers, server and worker share the machine's 2 cores. Peer: the same uvicorn + FastAPI "
        "serving the same page of JSON from memory, no token "
        f"or catalog, same wrk settings for {peer_seconds} s in the same run. Command: `python bench/run.py --only "
        f"web --runs {runs}` (or `python bench/web_bench.py --runs {runs} --seconds {seconds}`).",
        "",
        "| | requests/s | p50 ms | p99 ms | errors | CPU ms per request |",
        "|---|---:|---:|---:|---:|---:|",
        f"| fleetgate reads (with {WRITERS} writers) | {med('reads_rps'):,.0f} | {med('read_p50'):.1f} | "
        f"{med('read_p99'):.1f} | {med('read_errors'):.0f} | {med('server_cpu_ms'):.2f} (server: reads and writes) |",
        f"| fleetgate writes: upload accepted (202) | {med('writes_rps'):,.1f} | {med('accept_p50'):.0f} | "
        f"{med('accept_p99'):.0f} | {med('write_errors'):.0f} | |",
        f"| fleetgate writes: upload to job done (ingested) | {med('writes_rps'):,.1f} | {med('write_p50'):.0f} | "
        f"{med('write_p99'):.0f} | {med('write_errors'):.0f} | {med('worker_cpu_ms'):.1f} (worker, per drop) |",
        f"| peer: static JSON, same stack | {med('peer_rps'):,.0f} | {med('peer_p50'):.1f} | {med('peer_p99'):.1f} | "
        f"0 | {med('peer_cpu_ms'):.2f} |",
        "",
        f"- The server process used {med('server_cpu_share'):.2f} of a core on average and the ingest worker "
        f"{med('worker_cpu_share'):.2f} (of the 2 the machine has): the rest went to wrk, the writers' client and "
        f"other jobs. Server CPU per request is independent of how busy the machine is: at "
        f"{med('server_cpu_ms'):.2f} ms one free core would serve about {1000 / max(0.01, med('server_cpu_ms')):,.0f} "
        "requests/s of this mix.",
        f"- Writes accepted per run: {', '.join(str(int(r['accepted'])) for r in results)}; acknowledged (job done, "
        f"file landed): {', '.join(str(int(r['writes'])) for r in results)}; the spool drained "
        f"{drained} s after the writers stopped. Lost (accepted, "
        f"no ingest run in the catalog): {lost:.0f}; doubled (a second run or asset): {doubled:.0f}; accepted but "
        f"not done: {unfinished:.0f}; write requests without their `web_request` log entry: {unlogged:.0f}.",
        f"- The server's event-loop thread spent {100 * med('loop_waited'):.0f}% of the run waiting, runnable, for "
        f"a CPU (`/proc/PID/task/PID/schedstat`; the peer's, alone with wrk: {100 * med('peer_waited'):.0f}%).",
        "- Each run (reads/s, read p99 ms, ingested/s): "
        + "; ".join(f"{r['reads_rps']:,.0f}, {r['read_p99']:.0f}, {r['writes_rps']:.1f}" for r in results)
        + ". The read p99 depends on the rest of the machine: while the event loop waits for a CPU (above), every "
        "request in flight waits with it.",
        "- Load average (1 min) before / at the end of each run: "
        + "; ".join(f"{r['load_before']:.1f} / {r['load_during']:.1f}" for r in results)
        + " (other engineers' jobs share this machine; figures measured while it is busy are lower).",
        f"- Target: ≥ 500 reads/s with p99 < 100 ms: {'met' if met else 'not met'} in the medians above"
        + (f" ({'reads/s' if med('reads_rps') < 500 else 'p99'} short)." if not met else "."),
        "",
    ]
    return lines


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--peer-seconds", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fleetgate-web-bench-") as tmp:
        print("\n".join(bench_web(Path(tmp), args.runs, args.seconds, args.peer_seconds)))


if __name__ == "__main__":
    main()
