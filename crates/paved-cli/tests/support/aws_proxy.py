"""A counting (and optionally throttling) proxy in front of the AWS emulator.

paved is pointed at this proxy with AWS_ENDPOINT_URL; every request is
forwarded to moto and counted by service, region and operation, so tests
can assert how many calls (and how many mutating calls) an apply made, or
that none was made at all (and one emulator quirk is corrected, see
below). With faults on, a share of requests is answered
503 / ThrottlingException without reaching the emulator.

    python aws_proxy.py PORT UPSTREAM_URL

Control endpoints (not forwarded):
    GET  /_proxy/stats            {"calls": {"ec2 eu-west-1 CreateVpc": 1, ...}, "throttled": n}
    POST /_proxy/reset            forget the counts
    POST /_proxy/faults?percent=N answer N% of requests with a throttling error
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
STATE = {"calls": {}, "throttled": 0, "percent": 0}
RNG = random.Random(7)
SCOPE = re.compile(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request")


def operation(method, path, headers, body):
    """The API operation a request calls, whatever the protocol."""
    target = headers.get("X-Amz-Target")
    if target:  # JSON protocols: KMS, CloudWatch Logs, SQS, Secrets Manager
        return target.split(".")[-1]
    if body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        if "Action" in form:  # query protocols: EC2, IAM, RDS, ELBv2, STS
            return form["Action"][0]
    # REST protocols (EKS, S3): the method and the shape of the path.
    parsed = urllib.parse.urlparse(path)
    parts = [p for p in parsed.path.split("/") if p]
    shape = "/".join(parts[:1] + ["{}" for _ in parts[1:]])
    query = ",".join(sorted(k for k in urllib.parse.parse_qs(parsed.query, keep_blank_values=True)))
    return f"{method} /{shape}" + (f"?{query}" if query else "")


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
            if parsed.path == "/_proxy/stats":
                return self.reply(200, json.dumps({"calls": STATE["calls"], "throttled": STATE["throttled"]}).encode())
            if parsed.path == "/_proxy/reset":
                STATE["calls"], STATE["throttled"] = {}, 0
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
        key = f"{service} {region} {operation(self.command, self.path, self.headers, body)}"
        with LOCK:
            STATE["calls"][key] = STATE["calls"].get(key, 0) + 1
            throttle = service != "sts" and RNG.randrange(100) < STATE["percent"]
            if throttle:
                STATE["throttled"] += 1
        if throttle:
            return self.reply(
                503,
                b'{"__type":"ThrottlingException","message":"Rate exceeded (injected by the test proxy)"}',
                [("Content-Type", "application/x-amz-json-1.1"), ("x-amzn-ErrorType", "ThrottlingException")],
            )
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
        passed = [(k, v) for k, v in answer.getheaders() if k.lower() not in ("connection", "transfer-encoding", "content-length")]
        self.reply(answer.status, data, passed)
        upstream.close()

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
