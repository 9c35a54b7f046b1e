"""A counting (and optionally throttling) proxy in front of the AWS emulator.

paved is pointed at this proxy with AWS_ENDPOINT_URL; every request is
forwarded to moto and counted by service, region and operation, so tests
can assert how many calls (and how many mutating calls) an apply made, or
that none was made at all (and one emulator quirk is corrected, see
below). With faults on, a share of requests is answered
503 / ThrottlingException without reaching the emulator. With propagation
on, the proxy answers what AWS answers in the moments after a create, as
AWS documents those errors (codes, status and messages), each a fixed number
of times, so runs repeat:

* EKS `CreateCluster` naming a role created a moment ago: 400
  InvalidParameterException "Role with arn: ARN, could not be assumed because
  it does not exist or the trusted entity is not correct" (IAM is eventually
  consistent: https://docs.aws.amazon.com/IAM/latest/UserGuide/troubleshoot_general.html#troubleshoot_general_eventual-consistency),
  twice per role;
* EC2 calls naming a VPC or subnet created a moment ago: 400
  InvalidVpcID.NotFound / InvalidSubnetID.NotFound "The vpc ID 'vpc-…' does
  not exist" (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html),
  once per id;
* IAM `PutRolePolicy`: 409 ConcurrentModification "The request was rejected
  because multiple requests to change this object were submitted
  simultaneously. Wait a few minutes and submit your request again."
  (https://docs.aws.amazon.com/IAM/latest/APIReference/CommonErrors.html),
  once per role;
* EKS updates take time: `DescribeUpdate` reports each update
  `InProgress` twice before the emulator's answer, and while one runs
  another update of the same cluster is refused with 409
  ResourceInUseException "The specified resource is in use."
  (https://docs.aws.amazon.com/eks/latest/APIReference/API_UpdateClusterConfig.html);
  the first `UpdateNodegroupVersion` of each node group meets an update
  EKS started by itself (a platform version), refused the same way.

    python aws_proxy.py PORT UPSTREAM_URL

Control endpoints (not forwarded):
    GET  /_proxy/stats            {"calls": {"ec2 eu-west-1 CreateVpc": 1, ...}, "throttled": n}
    POST /_proxy/reset            forget the counts
    POST /_proxy/faults?percent=N answer N% of requests with a throttling error
    POST /_proxy/propagation?on=1 answer as AWS does right after creates (above)
    POST /_proxy/nat?fail=1       CreateNatGateway answers a gateway that failed, as EC2 reports
                                  one whose VPC has no internet gateway (`Gateway.NotAttached`)
    POST /_proxy/zones?drop=Z,…   DescribeAvailabilityZones leaves out zones Z (an account
                                  without those zone letters: they differ between accounts)
    GET  /_proxy/injected         {"InvalidVpcID.NotFound": n, ...}
    GET  /_proxy/seen             ["ec2 CreateVpc", ...]: every operation since start (never reset)
"""

import http.client
import json
import random
import re
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, UPSTREAM = int(sys.argv[1]), urllib.parse.urlparse(sys.argv[2])
LOCK = threading.Lock()
STATE = {"calls": {}, "throttled": 0, "percent": 0, "propagation": False, "injected": {}, "seen": set(), "drop_zones": [], "nat_fails": False}
# id or role name → how many more times it is "not there yet".
PENDING = {"role": {}, "ec2": {}, "policy": set(), "updates": {}, "busy": {}, "upgraded": set()}
EKS_UPDATES = ("UpdateClusterConfig", "UpdateClusterVersion", "UpdateNodegroupConfig", "UpdateNodegroupVersion")
RNG = random.Random(7)
SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request")


_ROUTES = {}


def _routes(service):
    """(method, path regex, required query keys, operation) of a REST
    service, from botocore's own model of the API, most specific first."""
    if service not in _ROUTES:
        routes = []
        try:
            import botocore.session
            model = botocore.session.get_session().get_service_model(service)
        except Exception:  # not a service botocore knows by that name
            model = None
        for name in model.operation_names if model else []:
            http = model.operation_model(name).http
            uri, _, query = http["requestUri"].partition("?")
            pattern = "".join(
                "[^/]+" if part.startswith("{") and not part.endswith("+}") else ".+" if part.startswith("{") else re.escape(part)
                for part in re.split(r"(\{[^}]+\})", uri)
            )
            keys = {q.split("=")[0] for q in query.split("&") if q}
            shape = model.operation_model(name).input_shape
            for member in shape.required_members if shape else []:
                where = shape.members[member].serialization
                if where.get("location") == "querystring":
                    keys.add(where.get("name", member))
            routes.append((http["method"], re.compile(f"^{pattern.rstrip('/')}/?$"), keys, name))
        routes.sort(key=lambda r: (-len(r[2]), -len(r[1].pattern)))
        _ROUTES[service] = routes
    return _ROUTES[service]


def operation(method, path, headers, body, service="-"):
    """The API operation a request calls, whatever the protocol."""
    target = headers.get("X-Amz-Target")
    if target:  # JSON protocols: KMS, CloudWatch Logs, SQS, Secrets Manager
        return target.split(".")[-1]
    if body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:  # query protocols: EC2, IAM, RDS, ELBv2, STS
            return form["Action"][0]
    # REST protocols (EKS, S3, Route 53): the operation whose route in
    # botocore's model matches, else the method and the shape of the path.
    parsed = urllib.parse.urlparse(path)
    keys = set(urllib.parse.parse_qs(parsed.query, keep_blank_values=True))
    for m, pattern, required, name in _routes(service):
        if m == method and required <= keys and pattern.match(parsed.path or "/"):
            return name
    parts = [p for p in parsed.path.split("/") if p]
    shape = "/".join(parts[:1] + ["{}" for _ in parts[1:]])
    query = ",".join(sorted(k for k in urllib.parse.parse_qs(parsed.query, keep_blank_values=True)))
    return f"{method} /{shape}" + (f"?{query}" if query else "")


def _cluster(path):
    parts = urllib.parse.urlparse(path).path.split("/")
    return parts[2] if len(parts) > 2 and parts[1] == "clusters" else ""


def _in_use():
    injected("ResourceInUseException")
    return (409, json.dumps({"message": "The specified resource is in use."}).encode(),
            [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ResourceInUseException")])


def created(service, op, body, data, path="/"):
    """Remembers what a successful create (or EKS update) made, for `propagating`."""
    with LOCK:
        if service == "eks" and op in EKS_UPDATES:
            update = json.loads(data or b"{}").get("update") or {}
            if update.get("id"):
                PENDING["updates"][update["id"]] = 2
                PENDING["busy"][_cluster(path)] = update["id"]
        if service == "iam" and op == "CreateRole":
            name = urllib.parse.parse_qs(body.decode()).get("RoleName", [""])[0]
            PENDING["role"][name] = 2
        elif service == "ec2" and op in ("CreateVpc", "CreateSubnet"):
            tag = b"vpcId" if op == "CreateVpc" else b"subnetId"
            found = re.search(rb"<" + tag + rb">([^<]+)</" + tag + rb">", data)
            if found:
                PENDING["ec2"][found.group(1).decode()] = 1


def injected(code):
    STATE["injected"][code] = STATE["injected"].get(code, 0) + 1


def propagating(service, op, body, path="/"):
    """AWS's answer to a request naming something created a moment ago, or None."""
    with LOCK:
        if service == "eks" and op == "DescribeUpdate":
            update_id = urllib.parse.urlparse(path).path.rsplit("/", 1)[-1]
            if PENDING["updates"].get(update_id, 0) > 0:
                PENDING["updates"][update_id] -= 1
                injected("InProgress")
                update = {"id": update_id, "status": "InProgress", "type": "VersionUpdate", "params": [], "errors": []}
                return (200, json.dumps({"update": update}).encode(), [("Content-Type", "application/json")])
        if service == "eks" and op in EKS_UPDATES:
            running = PENDING["busy"].get(_cluster(path))
            if running and PENDING["updates"].get(running, 0) > 0:
                return _in_use()
            nodegroup = urllib.parse.urlparse(path).path
            if op == "UpdateNodegroupVersion" and nodegroup not in PENDING["upgraded"]:
                PENDING["upgraded"].add(nodegroup)
                return _in_use()
        if service == "eks" and op == "CreateCluster":
            arn = json.loads(body or b"{}").get("roleArn", "")
            name = arn.rsplit("/", 1)[-1]
            if PENDING["role"].get(name, 0) > 0:
                PENDING["role"][name] -= 1
                injected("InvalidParameterException")
                message = f"Role with arn: {arn}, could not be assumed because it does not exist or the trusted entity is not correct"
                return (400, json.dumps({"message": message}).encode(),
                        [("Content-Type", "application/json"), ("x-amzn-ErrorType", "InvalidParameterException")])
        if service == "ec2" and not op.startswith("Describe"):
            form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
            for param, code, what in (("VpcId", "InvalidVpcID.NotFound", "vpc"), ("SubnetId", "InvalidSubnetID.NotFound", "subnet")):
                value = form.get(param, [""])[0]
                if PENDING["ec2"].get(value, 0) > 0:
                    PENDING["ec2"][value] -= 1
                    injected(code)
                    xml = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>"
                           f"<Message>The {what} ID '{value}' does not exist</Message></Error></Errors>"
                           f"<RequestID>00000000-0000-0000-0000-000000000000</RequestID></Response>")
                    return (400, xml.encode(), [("Content-Type", "text/xml")])
        if service == "iam" and op == "PutRolePolicy":
            name = urllib.parse.parse_qs(body.decode()).get("RoleName", [""])[0]
            if name not in PENDING["policy"]:
                PENDING["policy"].add(name)
                injected("ConcurrentModification")
                xml = ("<ErrorResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><Error><Type>Sender</Type>"
                       "<Code>ConcurrentModification</Code><Message>The request was rejected because multiple requests "
                       "to change this object were submitted simultaneously. Wait a few minutes and submit your request "
                       "again.</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>")
                return (409, xml.encode(), [("Content-Type", "text/xml")])
    return None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def control(self):
        parsed = urllib.parse.urlparse(self.path)
        with LOCK:
            if parsed.path == "/_proxy/seen":
                return self.reply(200, json.dumps(sorted(STATE["seen"])).encode())
            if parsed.path == "/_proxy/injected":
                return self.reply(200, json.dumps(STATE["injected"]).encode())
            if parsed.path == "/_proxy/propagation":
                STATE["propagation"] = urllib.parse.parse_qs(parsed.query).get("on", ["0"])[0] == "1"
            if parsed.path == "/_proxy/stats":
                return self.reply(200, json.dumps({"calls": STATE["calls"], "throttled": STATE["throttled"]}).encode())
            if parsed.path == "/_proxy/reset":
                STATE["calls"], STATE["throttled"] = {}, 0
            elif parsed.path == "/_proxy/nat":
                STATE["nat_fails"] = urllib.parse.parse_qs(parsed.query).get("fail", ["0"])[0] == "1"
            elif parsed.path == "/_proxy/zones":
                dropped = urllib.parse.parse_qs(parsed.query).get("drop", [""])[0]
                STATE["drop_zones"] = [z for z in dropped.split(",") if z]
            elif parsed.path == "/_proxy/faults":
                STATE["percent"] = int(urllib.parse.parse_qs(parsed.query).get("percent", ["0"])[0])
        return self.reply(200, b"{}")

    def handle_any(self):
        if self.path.startswith("/_proxy/"):
            return self.control()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        scope = SCOPE.search(self.headers.get("Authorization", ""))
        region, service = scope.groups() if scope else ("-", "-")
        key = f"{service} {region} {operation(self.command, self.path, self.headers, body, service)}"
        with LOCK:
            STATE["calls"][key] = STATE["calls"].get(key, 0) + 1
            STATE["seen"].add(f"{service} {key.split(' ', 2)[2]}")
            throttle = service != "sts" and RNG.randrange(100) < STATE["percent"]
            if throttle:
                STATE["throttled"] += 1
        if throttle:
            return self.reply(
                503,
                b'{"__type":"ThrottlingException","message":"Rate exceeded (injected by the test proxy)"}',
                [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", "ThrottlingException")],
            )
        refusal = propagating(service, key.split(" ", 2)[2], body, self.path) if STATE["propagation"] else None
        if refusal:
            return self.reply(*refusal)
        upstream = http.client.HTTPConnection(UPSTREAM.hostname, UPSTREAM.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        upstream.request(self.command, self.path, body=body, headers=headers)
        answer = upstream.getresponse()
        data = answer.read()
        # moto 5 answers GetBucketVersioning with the root element
        # <GetBucketVersioningResponse>; S3 (and the SDK's parser) use
        # <VersioningConfiguration>. Rewritten here so the emulator speaks S3.
        if data.startswith(b"<?xml") and b"<GetBucketVersioningResponse" in data[:200]:
            data = data.replace(b"GetBucketVersioningResponse", b"VersioningConfiguration")
        if key.endswith(" CreateNatGateway") and STATE["nat_fails"] and answer.status == 200:
            failure = (b"<state>failed</state><failureCode>Gateway.NotAttached</failureCode>"
                       b"<failureMessage>Network vpc-0 has no Internet gateway attached</failureMessage>")
            data = re.sub(rb"<state>[a-z]+</state>", failure, data, count=1)
        if key.endswith(" DescribeAvailabilityZones"):
            for zone in STATE["drop_zones"]:
                item = rb"<item>(?:(?!</item>).)*?<zoneName>" + re.escape(zone.encode()) + rb"</zoneName>.*?</item>"
                data = re.sub(item, b"", data, flags=re.S)
        if STATE["propagation"] and answer.status == 200:
            created(service, key.split(" ", 2)[2], body, data, self.path)
        passed = [(k, v) for k, v in answer.getheaders() if k.lower() not in ("connection", "transfer-encoding", "content-length")]
        self.reply(answer.status, data, passed)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
