#!/usr/bin/env python3
"""Benchmark: the AWS provider against the moto emulator, every call counted.

1. Provision, re-apply (no change) and destroy the examples' three `aws-eu`
   environments: wall time and API calls (by service, and how many change
   something).
2. Drift over 100 environments (about 3,000 resources, two regions): one
   `paved drift --all` sweep, side by side with what a per-resource refresh
   costs (a no-change `paved apply` observes each resource on its own).

Not a test: timings never gate anything. Run with the test virtualenv
(scripts/test creates it):

    ~/.cache/paved/venv/bin/python bench/aws-moto.py [--fleet 100]
"""

import argparse
import collections
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3

from benchlib import ROOT, build_paved, free_port, postgres, result, wait_port

PY = sys.executable


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fleet", type=int, default=100, help="environments in the drift sweep")
    args = ap.parse_args()

    paved_bin = build_paved()

    work = pathlib.Path(tempfile.mkdtemp(prefix="paved-aws-bench-"))
    # Behind every RDS endpoint: services' logins are made on it.
    pg_port, stop_pg = postgres(work, databases=("payments_db",))
    moto_port, proxy_port = free_port(), free_port()
    moto = subprocess.Popen([PY, str(ROOT / "crates/paved-cli/tests/support/moto_server.py"),
                             "-H", "127.0.0.1", "-p", str(moto_port)],
                            env={**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true",
                                 "PAVED_TEST_RDS_ENDPOINT": f"127.0.0.1:{pg_port}"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proxy = subprocess.Popen([PY, str(ROOT / "crates/paved-cli/tests/support/aws_proxy.py"), str(proxy_port),
                              f"http://127.0.0.1:{moto_port}"])
    try:
        wait_port(moto_port)
        wait_port(proxy_port)
        run(paved_bin, work, moto_port, proxy_port, args.fleet)
    finally:
        proxy.kill()
        moto.kill()
        stop_pg()
        shutil.rmtree(work, ignore_errors=True)


def run(paved_bin, work, moto_port, proxy_port, fleet):
    env = {**os.environ, "PAVED_DATA_DIR": str(work / "data"), "PAVED_ACTOR": "bench", "NO_COLOR": "1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy_port}"}
    env.pop("PAVED_STATE", None)
    moto_url = f"http://127.0.0.1:{moto_port}"
    root = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "endpoint_url": moto_url}

    def paved(*argv, check=True, stdin=None):
        out = subprocess.run([str(paved_bin), *argv], cwd=ROOT, env=env, input=stdin, capture_output=True, text=True)
        if check and out.returncode != 0:
            raise SystemExit(f"paved {' '.join(argv)} failed:\n{out.stdout}\n{out.stderr}")
        return out

    def proxy(path, method="GET"):
        req = urllib.request.Request(f"http://127.0.0.1:{proxy_port}{path}", method=method)
        return json.load(urllib.request.urlopen(req))

    def measured(*argv):
        proxy("/_proxy/reset", "POST")
        started = time.monotonic()
        paved(*argv)
        return time.monotonic() - started, proxy("/_proxy/stats")["calls"]

    def mutating(call):
        service, _, op = call.split(" ", 2)
        if op.split(" ")[0] in ("GET", "HEAD"):
            return False
        if op.split(" ")[0] in ("PUT", "POST", "DELETE"):
            return True
        return not op.startswith(("Describe", "Get", "List", "Head", "AssumeRoleWithWebIdentity"))

    def summary(calls):
        by_service = collections.Counter()
        for call, n in calls.items():
            by_service[call.split(" ")[0]] += n
        total = sum(calls.values())
        changing = sum(n for call, n in calls.items() if mutating(call))
        return total, changing, ", ".join(f"{s} {n}" for s, n in sorted(by_service.items()))

    paved("apply", "-f", "examples/platform")
    paved("apply", "-f", "examples/environments/aws-eu.yaml")
    paved("apply", "-f", "examples/services")
    setup = json.loads(paved("account", "trust-policy", "aws-eu", "--control-plane", "-o", "json").stdout)
    install_trust(root, setup)
    # The blueprint's domain has its public zone in the account (certificates are validated there).
    boto3.client("route53", region_name="us-east-1", **root).create_hosted_zone(Name="example.com",
                                                                                CallerReference="paved-bench")

    print("## Provision, re-apply and destroy the three example environments (moto)\n")
    print("| step | environment | wall | API calls | changing | by service |")
    print("|---|---|---|---|---|---|")
    examples = [("eu-dev", "eu-central-1"), ("eu-staging", "eu-west-1"), ("eu-production", "eu-west-1")]
    for step in ("apply", "re-apply"):
        for name, _ in examples:
            wall, calls = measured("apply", "-e", name)
            total, changing, services = summary(calls)
            print(f"| {step} | {name} | {wall:.2f} s | {total} | {changing} | {services} |")
            result("aws", f"{step} {name}", f"{wall:.2f} s, {total} calls, {changing} changing")
    # Production is deletion-protected: lifted the way paved's refusal says to.
    lift_protection(root, "eu-production", "eu-west-1")
    for name, _ in examples:
        wall, calls = measured("destroy", "-e", name)
        total, changing, services = summary(calls)
        print(f"| destroy | {name} | {wall:.2f} s | {total} | {changing} | {services} |")
        result("aws", f"destroy {name}", f"{wall:.2f} s, {total} calls, {changing} changing")

    print(f"\n## Drift over {fleet} environments: one sweep against a per-resource refresh\n")
    blueprint = (ROOT / "examples/platform/blueprint-web-service-standard.yaml").read_text()
    blueprint = blueprint.replace("name: web-service-standard", "name: fleet").replace(
        "addressSpace: 10.40.0.0/16", "addressSpace: 10.0.0.0/9")
    specs = [blueprint, "apiVersion: paved.dev/v1alpha1\nkind: CloudAccount\nmetadata:\n  name: aws-fleet\nspec:\n"
             "  provider: aws\n  accountId: \"123456789012\"\n  allowedRegions: [eu-central-1, eu-west-1]\n"
             "  credentials:\n    aws:\n      roleArn: arn:aws:iam::123456789012:role/paved-fleet\n"]
    names = [f"fleet-{i:03}" for i in range(fleet)]
    for i, name in enumerate(names):
        region = ["eu-central-1", "eu-west-1"][i % 2]
        specs.append(f"apiVersion: paved.dev/v1alpha1\nkind: Environment\nmetadata:\n  name: {name}\nspec:\n"
                     f"  blueprint: fleet@1.2.0\n  account: aws-fleet\n  region: {region}\n  type: development\n"
                     "  owner: platform\n")
    paved("apply", "-f", "-", stdin="---\n".join(specs))
    install_trust(root, json.loads(paved("account", "trust-policy", "aws-fleet", "--control-plane", "-o", "json").stdout))
    started = time.monotonic()
    for name in names:
        paved("apply", "-e", name)
    resources = len(json.loads(paved("plan", "-e", names[0], "-o", "json").stdout)["nodes"]) * fleet
    print(f"(provisioned {fleet} environments, about {resources} resources, in {time.monotonic() - started:.0f} s)\n")

    proxy("/_proxy/reset", "POST")
    started = time.monotonic()
    out = paved("drift", "--all", check=False)
    sweep_wall, sweep_calls = time.monotonic() - started, proxy("/_proxy/stats")["calls"]
    if out.returncode not in (0, 3):
        raise SystemExit(out.stderr)
    proxy("/_proxy/reset", "POST")
    started = time.monotonic()
    for name in names:
        paved("apply", "-e", name)
    refresh_wall, refresh_calls = time.monotonic() - started, proxy("/_proxy/stats")["calls"]
    sweep_total, refresh_total = sum(sweep_calls.values()), sum(refresh_calls.values())
    print("| read | wall | API calls | calls per environment |")
    print("|---|---|---|---|")
    print(f"| `paved drift --all` (sweep) | {sweep_wall:.1f} s | {sweep_total} | {sweep_total / fleet:.1f} |")
    print(f"| per-resource refresh (no-change `paved apply` each) | {refresh_wall:.1f} s | {refresh_total} | "
          f"{refresh_total / fleet:.1f} |")
    print(f"\n{refresh_total / max(sweep_total, 1):.1f}x fewer calls for the sweep\n")
    result("aws", f"drift over {fleet} environments: sweep vs per-resource refresh",
           f"{sweep_total} vs {refresh_total} calls ({refresh_total / max(sweep_total, 1):.1f}x fewer), "
           f"{sweep_wall:.1f} s vs {refresh_wall:.1f} s")
    print("Sweep calls by operation:\n")
    for call, n in sorted(sweep_calls.items(), key=lambda kv: -kv[1]):
        print(f"    {n:6}  {call}")


def install_trust(root, setup):
    iam = boto3.client("iam", region_name="us-east-1", **root)
    provider = setup["oidc_provider"]
    try:
        iam.create_open_id_connect_provider(Url=provider["url"], ClientIDList=provider["client_ids"])
    except iam.exceptions.EntityAlreadyExistsException:
        pass
    iam.create_role(RoleName=setup["role_arn"].split("/")[-1], AssumeRolePolicyDocument=json.dumps(setup["trust_policy"]))


def lift_protection(root, env, region):
    elb = boto3.client("elbv2", region_name=region, **root)
    for lb in elb.describe_load_balancers(Names=[f"paved-{env}"])["LoadBalancers"]:
        elb.modify_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"],
                                            Attributes=[{"Key": "deletion_protection.enabled", "Value": "false"}])
    rds = boto3.client("rds", region_name=region, **root)
    for db in rds.describe_db_instances()["DBInstances"]:
        if db["DBInstanceIdentifier"].startswith(f"paved-{env}-"):
            rds.modify_db_instance(DBInstanceIdentifier=db["DBInstanceIdentifier"], DeletionProtection=False,
                                   ApplyImmediately=True)


if __name__ == "__main__":
    main()
