#!/usr/bin/env python3
"""Benchmark: API throughput with one `paved server` and with three replicas
of it, on one PostgreSQL store and this one machine.

The store is seeded with `--envs` environments of `--per` applied resources
each (the API benchmark's `seed_store`). For each deployment (1 replica, then
3), `--clients` closed-loop clients ask each endpoint for `--duration` with
`oha`; with three replicas the clients are split evenly over them, as a
load balancer would (one oha per replica, all at once). Figures: requests/s
summed over the replicas, and the slowest replica's p50 and p99.

On one machine replicas add no cores: this measures what replication costs
(or not) when the CPU is shared, not what it gains across machines.

Not a test: timings never gate anything.

    ~/.cache/paved/venv/bin/python bench/replicas.py [--envs 10000] [--per 10] \
        [--clients 96] [--duration 30s]
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import tempfile

from benchlib import ROOT, build_paved, free_port, postgres, result, wait_port


def oha_binary():
    found = shutil.which("oha")
    if found:
        return found
    tools = pathlib.Path.home() / ".cache/paved/tools"
    if not (tools / "bin/oha").exists():
        print(f"== installing oha (crates.io) into {tools}", flush=True)
        subprocess.run(["cargo", "install", "--locked", "--root", str(tools), "oha"], check=True,
                       capture_output=True)
    return str(tools / "bin/oha")


def seed_binary(paved_bin):
    """The API benchmark's store seeder, built with the same profile as paved."""
    profile = os.environ.get("PAVED_BENCH_PROFILE", "release")
    subprocess.run(["cargo", "build", "--profile", profile, "-q", "-p", "paved-server", "--example", "seed_store"],
                   cwd=ROOT, check=True, env={**os.environ, "CARGO_TARGET_DIR": str(paved_bin.parent.parent)})
    return paved_bin.parent / "examples/seed_store"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, default=10000)
    ap.add_argument("--per", type=int, default=10)
    ap.add_argument("--clients", type=int, default=96, help="closed-loop clients in all (split over replicas)")
    ap.add_argument("--duration", default="30s", help="per endpoint and deployment")
    args = ap.parse_args()
    paved_bin = build_paved()
    seed = seed_binary(paved_bin)
    oha = oha_binary()
    work = pathlib.Path(tempfile.mkdtemp(prefix="paved-replicas-"))
    pg_port, stop_pg = postgres(work, ["paved"])
    state = f"postgres://paved@127.0.0.1:{pg_port}/paved?sslmode=require"
    env = {**os.environ, "PAVED_DATA_DIR": str(work / "data"), "PAVED_CONFIG_DIR": str(work / "data/config"),
           "PAVED_STATE": state, "NO_COLOR": "1"}
    servers = []
    try:
        def paved(*argv, stdin=None):
            return subprocess.run([str(paved_bin), *argv], env=env, input=stdin, check=True, capture_output=True,
                                  text=True).stdout

        paved("apply", "-f", str(ROOT / "examples"))
        paved("apply", "-f", "-", stdin="apiVersion: paved.dev/v1alpha1\nkind: RoleBinding\nmetadata: {name: bench}\n"
              "spec: {role: viewer, subjects: ['serviceaccount:bench'], scope: organisation}\n")
        print(f"== seeding {args.envs} environments × {args.per} resources", flush=True)
        subprocess.run([str(seed), state, str(args.envs), str(args.per)], check=True, env=env, capture_output=True)
        token = json.loads(paved("token", "create", "bench", "--subject", "serviceaccount:bench", "-o", "json"))["secret"]
        mid = f"env-{args.envs // 2:05d}"
        endpoints = [("whoami", "/api/v1/whoami"), ("list", "/api/v1/environments?limit=50"),
                     ("describe", f"/api/v1/environments/{mid}")]

        print(f"{'replicas':<9} {'endpoint':<9} {'req/s':>9} {'p50_ms':>8} {'p99_ms':>8} {'errors':>7}")
        for replicas in (1, 3):
            ports = []
            for i in range(replicas):
                port = free_port()
                log = open(work / f"server-{replicas}-{i}.log", "w")
                servers.append(subprocess.Popen(
                    [str(paved_bin), "server", "--listen", f"127.0.0.1:{port}", "--replica-id", f"r{i}",
                     "--rate-limit", "1000000", "--rate-burst", "1000000"],
                    env=env, stdout=log, stderr=subprocess.STDOUT))
                ports.append(port)
            for port in ports:
                wait_port(port)
            for name, path in endpoints:
                per = max(1, args.clients // replicas)
                runs = [subprocess.Popen(
                    [oha, "-z", args.duration, "-w", "--no-tui", "--output-format", "json", "-c", str(per),
                     "-H", f"Authorization: Bearer {token}", f"http://127.0.0.1:{port}{path}"],
                    stdout=subprocess.PIPE, text=True) for port in ports]
                outs = [json.loads(r.communicate()[0]) for r in runs]
                rps = sum(o["summary"]["requestsPerSec"] for o in outs)
                p50 = max(o["latencyPercentiles"]["p50"] for o in outs) * 1000
                p99 = max(o["latencyPercentiles"]["p99"] for o in outs) * 1000
                errors = sum(sum(v for k, v in o.get("statusCodeDistribution", {}).items() if not k.startswith("2"))
                             + sum(o.get("errorDistribution", {}).values()) for o in outs)
                print(f"{replicas:<9} {name:<9} {rps:9.0f} {p50:8.2f} {p99:8.2f} {errors:7d}", flush=True)
                result("replicas", f"{replicas} replica{'s' if replicas > 1 else ''}, {name}",
                       f"{rps:,.0f} req/s, p99 {p99:.2f} ms" + (f", {errors} errors" if errors else ""))
            for s in servers:
                s.terminate()
            for s in servers:
                s.wait(timeout=90)
            servers.clear()
    finally:
        for s in servers:
            s.kill()
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
