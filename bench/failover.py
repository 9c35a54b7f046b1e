#!/usr/bin/env python3
"""Benchmark: how long work stops when the replica doing it goes.

Three `paved server` replicas share one PostgreSQL store, with the demo
environment (`paved up --runtime process`) recorded in it.

* Background loops: the replica holding the background lease (the
  reconciler, the git loop, audit checkpoints) is killed with SIGKILL
  `--rounds` times, and once stopped with SIGTERM; each time, the figure is
  the wall time from the signal until another replica's `/readyz` says it
  leads.
* Operations: `--takeover-rounds` times an apply of the demo environment
  is started on one replica, which is killed with SIGKILL half a second
  later; the figures are the wall time from the kill until another replica
  resumed the operation (its `resumed` event) and until it ended.

A killed replica is started again before the next round, so three always
run. Meanwhile a probe asks every live replica's `/readyz` ten times a
second and counts answers other than 200.

Not a test: timings never gate anything.

    ~/.cache/paved/venv/bin/python bench/failover.py [--rounds 5] [--lease-ttl 5s] \
        [--takeover-rounds 3] [--operation-heartbeat 1s]
"""

import argparse
import json
import os
import pathlib
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

from benchlib import build_paved, free_port, postgres, result, wait_port


def ready(port):
    """The replica's /readyz answer, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return json.load(r)
    except (OSError, urllib.error.URLError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5, help="leaders killed with SIGKILL")
    ap.add_argument("--lease-ttl", default="5s", help="the replicas' --lease-ttl")
    ap.add_argument("--takeover-rounds", type=int, default=3, help="replicas killed while running an apply")
    ap.add_argument("--operation-heartbeat", default="1s", help="the replicas' --operation-heartbeat")
    args = ap.parse_args()
    paved_bin = build_paved()
    work = pathlib.Path(tempfile.mkdtemp(prefix="paved-failover-bench-"))
    pg_port, stop_pg = postgres(work, databases=("paved",))
    env = {**os.environ, "PAVED_DATA_DIR": str(work / "data"), "PAVED_ACTOR": "bench", "NO_COLOR": "1",
           "PAVED_STATE": f"postgres://paved@127.0.0.1:{pg_port}/paved", "PAVED_RUNTIME": "process",
           "PAVED_DEMO_BIN": str(paved_bin.with_name("paved-demo"))}
    subprocess.run([str(paved_bin), "up", "--runtime", "process"], env=env, check=True, capture_output=True)
    ports = {name: free_port() for name in ("replica-1", "replica-2", "replica-3")}
    procs = {}

    def start(name):
        log = open(work / f"{name}.log", "a")
        proc = subprocess.Popen(
            [str(paved_bin), "server", "--listen", f"127.0.0.1:{ports[name]}", "--replica-id", name,
             "--lease-ttl", args.lease_ttl, "--reconcile-interval", "1s",
             "--operation-heartbeat", args.operation_heartbeat],
            env=env, stdout=log, stderr=log)
        wait_port(ports[name])
        procs[name] = proc  # probed from here on: it listens

    def leader(exclude=None):
        for name, port in ports.items():
            if name != exclude and (ready(port) or {}).get("leader"):
                return name
        return None

    def until_led(exclude, since):
        while time.monotonic() - since < 120:
            if leader(exclude):
                return time.monotonic() - since
            time.sleep(0.02)
        raise SystemExit(f"no replica took over from {exclude} in 120 s")

    probe = {"asked": 0, "failed": 0, "stop": False}

    def probe_loop():
        while not probe["stop"]:
            for name, port in ports.items():
                proc = procs.get(name)
                if proc is not None and proc.poll() is None:
                    probe["asked"] += 1
                    if ready(port) is None and procs.get(name) is proc:
                        probe["failed"] += 1
            time.sleep(0.1)

    try:
        for name in ports:
            start(name)
        started = time.monotonic()
        until_led(None, started)
        threading.Thread(target=probe_loop, daemon=True).start()
        kills = []
        for _ in range(args.rounds):
            old = leader()
            time.sleep(1)  # a steady lease, renewed a few times
            since = time.monotonic()
            killed = procs.pop(old)
            killed.send_signal(signal.SIGKILL)
            killed.wait()
            kills.append(until_led(old, since))
            start(old)
        token = (work / "data/bootstrap-admin.token").read_text().strip()
        takeovers = [take_over_an_apply(procs, ports, start, token) for _ in range(args.takeover_rounds)]
        old = leader()
        since = time.monotonic()
        stopped = procs.pop(old)
        stopped.send_signal(signal.SIGTERM)
        handover = until_led(old, since)
        stopped.wait()
        probe["stop"] = True
        print(f"\n## Failover: 3 replicas on PostgreSQL, --lease-ttl {args.lease_ttl}\n")
        print("| event | leader again after |")
        print("|---|---|")
        print(f"| leader killed (SIGKILL), {args.rounds} rounds | median {statistics.median(kills):.2f} s, "
              f"max {max(kills):.2f} s |")
        print(f"| leader stopped (SIGTERM) | {handover:.2f} s |")
        if takeovers:
            resumed, ended = [t[0] for t in takeovers], [t[1] for t in takeovers]
            print(f"| replica running an apply killed (SIGKILL), {len(takeovers)} rounds, "
                  f"--operation-heartbeat {args.operation_heartbeat} | resumed elsewhere after median "
                  f"{statistics.median(resumed):.2f} s (max {max(resumed):.2f} s); ended after median "
                  f"{statistics.median(ended):.2f} s |")
        print(f"\n/readyz probes of live replicas: {probe['asked']}, unanswered: {probe['failed']}\n")
        result("failover", f"leader killed → another leads (lease {args.lease_ttl})",
               f"median {statistics.median(kills):.2f} s, max {max(kills):.2f} s over {args.rounds} kills")
        result("failover", "leader stopped cleanly → another leads", f"{handover:.2f} s")
        if takeovers:
            result("failover", f"apply's replica killed → resumed elsewhere (heartbeat {args.operation_heartbeat})",
                   f"median {statistics.median(resumed):.2f} s, max {max(resumed):.2f} s; "
                   f"ended after median {statistics.median(ended):.2f} s")
        result("failover", "/readyz probes of live replicas unanswered", f"{probe['failed']} of {probe['asked']}")
    finally:
        probe["stop"] = True
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        # The demo environment's processes outlive the replicas: stopped while its store is up.
        subprocess.run([str(paved_bin), "down"], env=env, capture_output=True)
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


def api(port, method, path, token):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


def wait_operation(port, op, token):
    while True:
        got = api(port, "GET", f"/api/v1/operations/{op}", token)
        if got["status"] != "running":
            return got
        time.sleep(0.05)


def take_over_an_apply(procs, ports, start, token):
    """Starts an apply of dev on one replica and kills it half a second in:
    (seconds until another resumed it, seconds until it ended)."""
    victim, other = list(ports)[0], list(ports)[1]
    done = wait_operation(ports[other], api(ports[other], "POST", "/api/v1/environments/dev/destroy", token)["id"],
                          token)
    assert done["status"] == "succeeded", done
    op = api(ports[victim], "POST", "/api/v1/environments/dev/apply", token)["id"]
    time.sleep(0.5)
    since = time.monotonic()
    killed = procs.pop(victim)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    resumed = None
    while True:
        got = api(ports[other], "GET", f"/api/v1/operations/{op}", token)
        if resumed is None and got.get("attempts", 1) > 1:
            resumed = time.monotonic() - since
        if got["status"] != "running":
            break
        if time.monotonic() - since > 300:
            raise SystemExit(f"operation {op} not finished 300 s after its replica was killed")
        time.sleep(0.02)
    ended = time.monotonic() - since
    if got["status"] != "succeeded" or resumed is None:
        raise SystemExit(f"operation {op} after its replica was killed: {got}")
    start(victim)
    return resumed, ended


if __name__ == "__main__":
    main()
