#!/usr/bin/env python3
"""Benchmark: how long the background loops stop when their replica goes.

Three `paved server` replicas share one PostgreSQL store. The one holding
the background lease (the reconciler, the git loop, audit checkpoints) is
killed with SIGKILL `--rounds` times, and once stopped with SIGTERM; each
time, the figure is the wall time from the signal until another replica's
`/readyz` says it leads. The killed replica is started again before the
next round, so three always run. Meanwhile a probe asks every live
replica's `/readyz` ten times a second and counts answers other than 200.

Not a test: timings never gate anything.

    ~/.cache/paved/venv/bin/python bench/failover.py [--rounds 5] [--lease-ttl 5s]
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
    args = ap.parse_args()
    paved_bin = build_paved()
    work = pathlib.Path(tempfile.mkdtemp(prefix="paved-failover-bench-"))
    pg_port, stop_pg = postgres(work, databases=("paved",))
    env = {**os.environ, "PAVED_DATA_DIR": str(work / "data"), "PAVED_ACTOR": "bench", "NO_COLOR": "1",
           "PAVED_STATE": f"postgres://paved@127.0.0.1:{pg_port}/paved"}
    ports = {name: free_port() for name in ("replica-1", "replica-2", "replica-3")}
    procs = {}

    def start(name):
        log = open(work / f"{name}.log", "a")
        proc = subprocess.Popen(
            [str(paved_bin), "server", "--listen", f"127.0.0.1:{ports[name]}", "--replica-id", name,
             "--lease-ttl", args.lease_ttl, "--reconcile-interval", "1s"],
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
        print(f"\n/readyz probes of live replicas: {probe['asked']}, unanswered: {probe['failed']}\n")
        result("failover", f"leader killed → another leads (lease {args.lease_ttl})",
               f"median {statistics.median(kills):.2f} s, max {max(kills):.2f} s over {args.rounds} kills")
        result("failover", "leader stopped cleanly → another leads", f"{handover:.2f} s")
        result("failover", "/readyz probes of live replicas unanswered", f"{probe['failed']} of {probe['asked']}")
    finally:
        probe["stop"] = True
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
