#!/usr/bin/env python3
"""Benchmark: preview environments from GitHub deliveries (local provider).

1. One pull request: signed `pull_request` delivery received -> the preview's
   web URL serving (200 through the preview's proxy), then closed -> gone.
2. 50 pull requests opened at once, then closed at once: time until all
   serve, time until all are gone, and proof that nothing leaked: processes,
   listening ports, PostgreSQL databases and roles, Docker containers and
   networks, files under the data directory.

The deliveries are the real `pull_request` payloads of
../shared/reference/github-webhooks/ with the number changed. Not a test:
timings never gate anything.

    python3 bench/previews.py [--count 50] [--binary target/release/paved]
"""

import argparse
import concurrent.futures
import hashlib
import hmac
import json
import os
import pathlib
import socket
import subprocess
import tempfile
import time
import urllib.request

from benchlib import free_port

ROOT = pathlib.Path(__file__).resolve().parent.parent
REFERENCE = pathlib.Path(os.environ.get("PAVED_REFERENCE_DIR", ROOT.parent / "shared/reference")) / "github-webhooks"
SECRET = b"bench-secret"


def paved(env, *args, stdin=None):
    out = subprocess.run([env["PAVED_BIN"], *args], env=env, input=stdin, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"paved {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout


def send(port, event, delivery, payload):
    body = json.dumps(payload).encode()
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1/webhooks/github", data=body, method="POST", headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig,
        "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status


def pull_request(action, number):
    name = {"opened": "pull_request_opened.payload.json", "closed": "pull_request_closed.payload.json"}[action]
    p = json.loads((REFERENCE / name).read_text())
    p["number"] = number
    p["pull_request"]["number"] = number
    return p


def serving(data, env):
    try:
        port = json.loads((data / "local/envs" / env / "proxy/proxy.json").read_text())["port"]
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(f"GET / HTTP/1.0\r\nHost: web.{env}.localhost\r\n\r\n".encode())
            return s.recv(64).split()[1] == b"200"
    except (OSError, KeyError, IndexError, ValueError):
        return False


def recorded(env, name):
    return subprocess.run([env["PAVED_BIN"], "get", "environment", name], env=env, capture_output=True).returncode == 0


def wait(what, predicate, seconds=600):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise SystemExit(f"timed out waiting for {what}")


def snapshot(data, addresses):
    """What exists on this machine that previews could leave behind."""
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    procs = sorted(l for l in ps if str(data) in l and "/envs/pr-" in l)
    ss = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True).stdout.splitlines()
    ports = sorted(l.split()[3] for l in ss if any(l.split()[3].startswith(a + ":") for a in addresses))
    files = sorted(str(p.relative_to(data)) for p in (data / "local/envs").glob("pr-*"))
    docker = []
    if subprocess.run(["docker", "version"], capture_output=True).returncode == 0:
        docker += subprocess.run(["docker", "ps", "-aq", "--filter", "name=-pr-"], capture_output=True, text=True).stdout.split()
        docker += subprocess.run(["docker", "network", "ls", "-q", "--filter", "name=-pr-"], capture_output=True, text=True).stdout.split()
    databases = databases_of(data)
    return {"processes": procs, "ports": ports, "files": files, "docker": docker, "databases": databases}


def databases_of(data):
    """Databases and roles named after previews in the platform cluster (root runs it as `postgres`)."""
    if os.geteuid() != 0:
        return ["(not checked: needs root to reach the cluster as postgres)"]
    h = hashlib.sha256(str(data).encode()).hexdigest()[:12]
    cluster = pathlib.Path("/var/lib/paved") / f"postgres-{h}"
    port = (cluster / "port").read_text().strip()
    sql = "SELECT datname FROM pg_database WHERE datname LIKE 'pr_%' UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'pr_%'"
    out = subprocess.run(["su", "postgres", "-c", f"psql -U paved -h {cluster} -p {port} -d postgres -Atc \"{sql}\""],
                         capture_output=True, text=True)
    return sorted(out.stdout.split()) if out.returncode == 0 else [f"(psql failed: {out.stderr.strip()})"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--binary", default=None, help="the paved binary (default: a release build)")
    args = ap.parse_args()
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/paved/target"))
    if not REFERENCE.is_dir():
        raise SystemExit(f"the real GitHub deliveries are not at {REFERENCE}: set PAVED_REFERENCE_DIR")
    if args.binary is None:
        profile = os.environ.get("PAVED_BENCH_PROFILE", "release")
        subprocess.run(["cargo", "build", "--profile", profile, "-q", "-p", "paved-cli"], cwd=ROOT, check=True,
                       env={**os.environ, "CARGO_TARGET_DIR": target})
        out = pathlib.Path(target) / ("debug" if profile == "dev" else profile)
        binary, demo = str(out / "paved"), str(out / "paved-demo")
    else:
        binary = str(pathlib.Path(args.binary).resolve())
        demo = str(pathlib.Path(binary).with_name("paved-demo"))
    data = pathlib.Path(tempfile.mkdtemp(prefix="paved-bench-previews-"))
    env = {**os.environ, "PAVED_DATA_DIR": str(data), "PAVED_BIN": binary, "PAVED_DEMO_BIN": demo,
           "PAVED_RUNTIME": "process", "PAVED_ACTOR": "bench", "NO_COLOR": "1"}
    env.pop("PAVED_STATE", None)
    os.chdir(ROOT)
    paved(env, "up")
    api = (ROOT / "examples/services/api.score.yaml").read_text().replace(
        "https://git.example.com/payments/api", "https://github.com/Codertocat/Hello-World")
    bp = (ROOT / "examples/platform/blueprint-web-service-standard.yaml").read_text().replace(
        "maxPerTeam: 3", f"maxPerTeam: {args.count + 5}")
    paved(env, "apply", "-f", "-", stdin=api + "\n---\n" + bp)
    (data / "secret").write_bytes(SECRET)
    port = free_port()
    log = open(data / "server.log", "w")
    server = subprocess.Popen([binary, "server", "--listen", f"127.0.0.1:{port}", "--reconcile-interval", "off",
                               "--github-webhook-secret-file", str(data / "secret"), "--git-interval", "1s"],
                              env=env, stdout=log, stderr=log)
    try:
        wait("the server", lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0, 30)
        before = snapshot(data, [])

        # 1. One preview: delivery -> serving.
        t0 = time.time()
        send(port, "pull_request", "one-open", pull_request("opened", 1))
        wait("pr-1 to serve", lambda: serving(data, "pr-1-hello-world"))
        one = time.time() - t0
        t0 = time.time()
        send(port, "pull_request", "one-close", pull_request("closed", 1))
        wait("pr-1 to be gone", lambda: not recorded(env, "pr-1-hello-world"))
        one_gone = time.time() - t0
        print(f"one preview: delivery -> serving {one:.1f} s; closed -> deleted {one_gone:.1f} s")
        print(f"RESULT\tpreviews\tone preview: delivery -> serving; closed -> deleted\t{one:.1f} s; {one_gone:.1f} s")

        # 2. Many at once.
        numbers = range(100, 100 + args.count)
        names = [f"pr-{n}-hello-world" for n in numbers]
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: send(port, "pull_request", f"open-{n}", pull_request("opened", n)), numbers))
        accepted = time.time() - t0
        ready_at = {}
        def all_serving():
            for name in names:
                if name not in ready_at and serving(data, name):
                    ready_at[name] = time.time() - t0
            return len(ready_at) == len(names)
        wait(f"{args.count} previews to serve", all_serving, 1800)
        opened = time.time() - t0
        addresses = []
        for name in names:
            net = json.loads((data / "local/envs" / name / "network.json").read_text())
            prefix = net["address"].rsplit(".", 1)[0]
            addresses += [f"{prefix}.{i}" for i in (1, 2, 3)]
        during = snapshot(data, addresses)
        print("while all serve: " + ", ".join(f"{len(v)} {k}" for k, v in during.items()) + " (what the leak check sees)")
        if any(d.startswith("(") for d in during["databases"]):
            print(f"  databases: {during['databases']}")
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            list(pool.map(lambda n: send(port, "pull_request", f"close-{n}", pull_request("closed", n)), numbers))
        wait(f"{args.count} previews to be gone", lambda: not any(recorded(env, n) for n in names), 1800)
        closed = time.time() - t0
        after = snapshot(data, addresses)
        per = sorted(ready_at.values())
        print(f"{args.count} previews: deliveries accepted in {accepted:.1f} s; all serving after {opened:.1f} s "
              f"(first {per[0]:.1f} s, median {per[len(per) // 2]:.1f} s); all closed and deleted after {closed:.1f} s")
        leaks = {k: v for k, v in after.items() if v != before.get(k, [])}
        for k, v in after.items():
            print(f"  leaked {k}: {len(v) - len(before.get(k, []))} {v[:5] if v != before.get(k, []) else ''}")
        print("no leaks" if not leaks else f"LEAKS: {json.dumps(leaks, indent=1)}")
        print(f"RESULT\tpreviews\t{args.count} at once: all serving; all deleted; leaks\t"
              f"{opened:.1f} s; {closed:.1f} s; {'none' if not leaks else ', '.join(leaks)}")
        if leaks:
            raise SystemExit(1)
    finally:
        server.terminate()
        server.wait(30)
        subprocess.run([binary, "down"], env=env, capture_output=True)


if __name__ == "__main__":
    main()
