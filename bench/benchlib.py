"""What the Python benchmarks share: ports, the paved binary, a throwaway
PostgreSQL, and the RESULT lines bench/all collects."""

import os
import pathlib
import socket
import subprocess
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port):
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def postgres(work, databases=()):
    """A throwaway PostgreSQL (TLS on, superuser `paved`, trust auth on
    127.0.0.1) with `databases` made. Returns its port and a function that
    stops it."""
    bins = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        raise SystemExit("PostgreSQL server binaries (Debian package `postgresql`) are needed")
    bin_dir = bins[-1].parent
    root = os.geteuid() == 0
    pg = work / "pg"
    pg.mkdir(parents=True)
    port = free_port()
    subprocess.run(["openssl", "req", "-new", "-x509", "-days", "2", "-nodes", "-subj", "/CN=127.0.0.1",
                    "-keyout", str(pg / "server.key"), "-out", str(pg / "server.crt")], check=True,
                   capture_output=True)
    os.chmod(pg / "server.key", 0o600)
    as_pg = ["runuser", "-u", "postgres", "--"] if root else []
    if root:
        subprocess.run(["chown", "-R", "postgres", str(work)], check=True)
    subprocess.run([*as_pg, str(bin_dir / "initdb"), "-D", str(pg / "data"), "-U", "paved", "-A", "trust",
                    "--no-sync"], check=True, capture_output=True)
    opts = (f"-p {port} -k {pg} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c ssl=on "
            f"-c ssl_cert_file={pg / 'server.crt'} -c ssl_key_file={pg / 'server.key'}")
    subprocess.run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(pg / "data"), "-o", opts, "-l", str(pg / "log"),
                    "-w", "start"], check=True, capture_output=True)
    for db in databases:
        subprocess.run(["psql", f"postgres://paved@127.0.0.1:{port}/postgres", "-qc", f"CREATE DATABASE {db}"],
                       check=True, capture_output=True)

    def stop():
        subprocess.run([*as_pg, str(bin_dir / "pg_ctl"), "-D", str(pg / "data"), "-m", "immediate", "stop"],
                       capture_output=True)
    return port, stop


def build_paved():
    """The paved binary of PAVED_BENCH_PROFILE (release, or dev for bench/all --quick), built here;
    PAVED_BENCH_BIN names one already built instead (API calls do not depend on the build)."""
    if os.environ.get("PAVED_BENCH_BIN"):
        return pathlib.Path(os.environ["PAVED_BENCH_BIN"])
    target = os.environ.get("CARGO_TARGET_DIR", str(pathlib.Path.home() / ".cache/paved/target"))
    profile = os.environ.get("PAVED_BENCH_PROFILE", "release")
    subprocess.run(["cargo", "build", "--profile", profile, "-q", "-p", "paved-cli"], cwd=ROOT, check=True,
                   env={**os.environ, "CARGO_TARGET_DIR": target})
    return pathlib.Path(target) / ("debug" if profile == "dev" else profile) / "paved"


def result(bench, figure, value):
    """A line bench/all collects into its table."""
    print(f"RESULT\t{bench}\t{figure}\t{value}")
