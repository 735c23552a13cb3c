"""A gate in front of the local S3 server that answers as AWS would for a given principal.

moto's server authorizes nothing (and its optional IAM check evaluates no condition), so every
request passes through this gate first:

1. the access key that signed the request names the principal (a role and exactly its policies);
2. the request is mapped to the IAM actions S3 authorizes it with (S3 API reference, "Actions,
   resources, and condition keys for Amazon S3"): a HEAD of a bucket needs ``s3:ListBucket``, a
   copy needs ``s3:GetObject`` on its source and ``s3:PutObject`` on its target, a multi-object
   delete ``s3:DeleteObject`` on every key, a list ``s3:ListBucket`` with ``s3:prefix``...;
3. each action is decided by the IAM simulator (:mod:`tests.iamsim`): denied, the gate answers
   403 AccessDenied naming the action and the resource, as S3 does, and the server never sees
   the request;
4. allowed, the request goes to moto; a 404 for a missing object becomes 403 when the principal
   is not allowed ``s3:ListBucket`` on the bucket with no ``s3:prefix`` in the request context.
   This is AWS's documented rule, where moto differs (it always answers 404). The GetObject and
   HeadObject API references: "If you have the s3:ListBucket permission on the bucket, Amazon S3
   returns an HTTP status code 404 (Not Found) error. If you don't have the s3:ListBucket
   permission, Amazon S3 returns an HTTP status code 403 ("access denied") error." A HEAD or GET
   of an object carries no ``s3:prefix``, so a ListBucket granted only under a prefix condition
   does not count.

Every request is recorded (principal, method, action, bucket, key, status) for the tests'
assertions and the per-action counts. Identity policies only: the bucket policy's TLS-only
statement cannot hold on a loopback server without TLS, and KMS is not emulated.

Path-style requests only (S3A is set to path-style access; boto3 uses it for an IP endpoint).
"""

from __future__ import annotations

import http.client
import re
import threading
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from tests.iamsim import Principal, Simulator

#: Bucket sub-resources (query parameters) and the action each needs, by HTTP method.
BUCKET_ACTIONS = {
    "GET": {
        "location": "s3:GetBucketLocation", "uploads": "s3:ListBucketMultipartUploads",
        "versioning": "s3:GetBucketVersioning", "policy": "s3:GetBucketPolicy",
        "encryption": "s3:GetEncryptionConfiguration", "lifecycle": "s3:GetLifecycleConfiguration",
        "ownershipControls": "s3:GetBucketOwnershipControls", "acl": "s3:GetBucketAcl",
        "publicAccessBlock": "s3:GetBucketPublicAccessBlock", "tagging": "s3:GetBucketTagging",
        "versions": "s3:ListBucketVersions",
    },
    "PUT": {
        "policy": "s3:PutBucketPolicy", "encryption": "s3:PutEncryptionConfiguration",
        "lifecycle": "s3:PutLifecycleConfiguration", "versioning": "s3:PutBucketVersioning",
        "ownershipControls": "s3:PutBucketOwnershipControls", "tagging": "s3:PutBucketTagging",
        "publicAccessBlock": "s3:PutBucketPublicAccessBlock", "acl": "s3:PutBucketAcl",
    },
    "DELETE": {"policy": "s3:DeleteBucketPolicy", "lifecycle": "s3:PutLifecycleConfiguration",
               "encryption": "s3:PutEncryptionConfiguration"},
}  # fmt: skip
OBJECT_ACTIONS = {
    "GET": {"uploadId": "s3:ListMultipartUploadParts", "tagging": "s3:GetObjectTagging",
            "acl": "s3:GetObjectAcl"},
    "PUT": {"tagging": "s3:PutObjectTagging", "acl": "s3:PutObjectAcl"},
    "DELETE": {"uploadId": "s3:AbortMultipartUpload", "tagging": "s3:DeleteObjectTagging"},
}  # fmt: skip
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Authorization:
    """One action S3 checks for a request, on one resource, with its request context."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        """The object key (or "" for a bucket)."""
        return self.resource.split(":::", 1)[1].partition("/")[2]


def _arn(bucket: str, key: str | None = None) -> str:
    return f"arn:aws:s3:::{bucket}" + (f"/{key}" if key is not None else "")


def authorizations(
    method: str, path: str, query: dict[str, list[str]], headers, body: bytes = b""
) -> list[Authorization]:
    """The IAM actions S3 authorizes a path-style REST request with (pure: tested alone)."""
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    head = method == "HEAD"
    method = "GET" if head else method
    if not bucket:
        return [Authorization("s3:ListAllMyBuckets", "*")]
    if not key:
        named = [a for q, a in BUCKET_ACTIONS.get(method, {}).items() if q in query]
        if named:
            return [Authorization(named[0], _arn(bucket))]
        if head:
            # HeadBucket is authorized as s3:ListBucket; it has no prefix parameter, so its
            # request context has no s3:prefix
            return [Authorization("s3:ListBucket", _arn(bucket))]
        if method == "GET":
            # ListObjects(V2): s3:prefix is the request's prefix, "" without one (AWS's examples
            # allow listing a bucket's root with "s3:prefix": [""])
            context = {"s3:prefix": query.get("prefix", [""])[0]}
            for name in ("delimiter", "max-keys"):
                if name in query:
                    context[f"s3:{name}"] = query[name][0]
            return [Authorization("s3:ListBucket", _arn(bucket), tuple(sorted(context.items())))]
        if method == "PUT":
            return [Authorization("s3:CreateBucket", _arn(bucket))]
        if method == "DELETE":
            return [Authorization("s3:DeleteBucket", _arn(bucket))]
        if method == "POST" and "delete" in query:
            keys = [el.text or "" for el in ET.fromstring(body).iter() if el.tag.endswith("Key")]
            return [Authorization("s3:DeleteObject", _arn(bucket, k)) for k in keys]
        return [Authorization(f"s3:Unknown{method}Bucket", _arn(bucket))]
    named = [a for q, a in OBJECT_ACTIONS.get(method, {}).items() if q in query]
    if named:
        return [Authorization(named[0], _arn(bucket, key))]
    if method == "GET":
        action = "s3:GetObjectVersion" if "versionId" in query else "s3:GetObject"
        return [Authorization(action, _arn(bucket, key))]
    if method == "DELETE":
        return [Authorization("s3:DeleteObject", _arn(bucket, key))]
    # PUT (an object, a part), POST ?uploads (start), POST ?uploadId (complete): s3:PutObject
    found = [Authorization("s3:PutObject", _arn(bucket, key))]
    source = headers.get("x-amz-copy-source")
    if source:  # CopyObject / UploadPartCopy read their source
        src_bucket, _, src_key = unquote(source.split("?", 1)[0]).lstrip("/").partition("/")
        found.insert(0, Authorization("s3:GetObject", _arn(src_bucket, src_key)))
    return found


@dataclass
class Record:
    """One request as the gate saw it and answered it."""

    principal: str
    method: str
    action: str
    bucket: str
    key: str
    status: int
    note: str = ""
    context: tuple[tuple[str, str], ...] = ()


@dataclass
class Verdict:
    """What the gate decided before forwarding a request."""

    who: str  # the principal's ARN
    principal: Principal | None
    method: str
    bucket: str
    key: str
    checks: list[Authorization]
    denial: str = ""


@dataclass
class S3Gate:
    """The gate on 127.0.0.1 in front of ``upstream`` (moto's server); ``principals`` by
    access key id."""

    upstream: str
    simulator: Simulator
    principals: dict[str, Principal] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)

    def start(self) -> S3Gate:
        gate = self
        target = urlsplit(self.upstream)
        local = threading.local()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet: the records are the log
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    raw = b""
                    while True:  # forwarded as it came, chunk framing included
                        size_line = self.rfile.readline()
                        raw += size_line
                        size = int(size_line.split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while True:
                                trailer = self.rfile.readline()
                                raw += trailer
                                if trailer in (b"\r\n", b"\n", b""):
                                    return raw
                        raw += self.rfile.read(size + 2)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                if not any(n.lower() == "content-length" for n, _ in headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _denied(self, principal: str, message: str) -> None:
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
                    f"<Message>User: {principal} is not authorized to perform: {message}"
                    "</Message></Error>"
                ).encode()
                self._answer(403, [("Content-Type", "application/xml")], body)

            def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
                for attempt in range(2):
                    connection = getattr(local, "connection", None)
                    if connection is None:
                        connection = http.client.HTTPConnection(target.hostname, target.port)
                        local.connection = connection
                    try:
                        # hop-by-hop headers stay here (this gate already answered Expect)
                        dropped = ("connection", "keep-alive", "expect")
                        headers = {k: v for k, v in self.headers.items()
                                   if k.lower() not in dropped}  # fmt: skip
                        connection.request(self.command, self.path, body=body, headers=headers)
                        response = connection.getresponse()
                        data = response.read()
                        hop = ("transfer-encoding", "connection")
                        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in hop]
                        if self.command != "HEAD":
                            kept = [(k, v) for k, v in kept if k.lower() != "content-length"]
                        return response.status, kept, data
                    except (http.client.HTTPException, OSError):
                        connection.close()
                        local.connection = None
                        if attempt:
                            raise
                raise AssertionError("unreachable")

            def _handle(self) -> None:
                body = self._body()
                verdict = gate.judge(self.command, self.path, self.headers, body)
                if verdict.denial:
                    self._denied(verdict.who, verdict.denial)
                    return
                status, headers, data = self._forward(body)
                denial = gate.settle(verdict, status)
                if denial:
                    self._denied(verdict.who, denial)
                    return
                self._answer(status, headers, data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address) -> None:
                # a client closing a kept-alive connection (a JVM exiting) is no error
                import sys

                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def judge(self, method: str, target: str, headers, body: bytes) -> Verdict:
        """Who sent the request and whether each action it needs is allowed."""
        url = urlsplit(target)
        query = parse_qs(url.query, keep_blank_values=True)
        auth = headers.get("Authorization", "") or " ".join(query.get("X-Amz-Credential", []))
        found = _CREDENTIAL.search(auth) or re.match(r"([^/]+)/", auth)
        principal = self.principals.get(found.group(1)) if found else None
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        if principal is None:
            self.records.append(Record("?", method, "", bucket, key, 403, "unknown key"))
            return Verdict("anonymous", None, method, bucket, key, [], "(an unknown access key)")
        checks = authorizations(method, url.path, query, headers, body)
        verdict = Verdict(principal.arn, principal, method, bucket, key, checks)
        for check in checks:
            context = dict(check.context)
            if not self.simulator.allows(principal, check.action, check.resource, context):
                self.records.append(Record(principal.name, method, check.action, bucket,
                                           check.key or key, 403, "denied"))  # fmt: skip
                verdict.denial = f'{check.action} on resource: "{check.resource}"' + (
                    f" with {context}" if context else ""
                )
                return verdict
        return verdict

    def settle(self, verdict: Verdict, status: int) -> str:
        """Record the server's answer; a denial when AWS would answer 403 instead (the 404
        rule of the module docstring)."""
        last = verdict.checks[-1].action
        note = ""
        if status == 404 and last in ("s3:GetObject", "s3:GetObjectVersion"):
            bucket_arn = _arn(verdict.bucket)
            if not self.simulator.allows(verdict.principal, "s3:ListBucket", bucket_arn):
                self.records.append(Record(verdict.principal.name, verdict.method, last,
                                           verdict.bucket, verdict.key, 403,
                                           "404 without ListBucket"))  # fmt: skip
                return (
                    f's3:ListBucket on resource: "{bucket_arn}" '
                    f"(asked for a missing key: {verdict.key})"
                )
            note = "not found"
        for check in verdict.checks:
            key = check.key or verdict.key
            self.records.append(Record(verdict.principal.name, verdict.method, check.action,
                                       verdict.bucket, key, status, note,
                                       check.context))  # fmt: skip
        return ""

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def admit(self, access_key: str, principal: Principal) -> dict[str, str]:
        """Let ``principal`` in with ``access_key``; the environment of a process using it."""
        self.principals[access_key] = principal
        return {"AWS_ACCESS_KEY_ID": access_key, "AWS_SECRET_ACCESS_KEY": "secret-" + access_key,
                "AWS_ENDPOINT_URL": self.url}  # fmt: skip

    def client(self, access_key: str, region: str):
        """A boto3 S3 client of the principal admitted with ``access_key``."""
        import boto3

        keys = {"aws_access_key_id": access_key, "aws_secret_access_key": "secret-" + access_key}
        return boto3.client("s3", endpoint_url=self.url, region_name=region, **keys)

    def denied(self, principal: str | None = None) -> list[Record]:
        return [r for r in self.records if r.status == 403
                and (principal is None or r.principal == principal)]  # fmt: skip

    def counts(self, principal: str | None = None) -> Counter:
        """Requests per (action, status), for the closing figures."""
        return Counter((r.action, r.status) for r in self.records
                       if principal is None or r.principal == principal)  # fmt: skip


def replay(records: list[Record], principal: Principal, simulator: Simulator) -> Record | None:
    """The first of the recorded requests ``principal`` would be refused (the simulator's
    decision on the same action and resource, AWS's 404 rule included), or None. For the
    negative tests: the same requests, a policy with one statement less."""
    for record in records:
        if record.status == 403 or not record.action:
            continue
        resource = _arn(record.bucket, record.key if record.key else None)
        if record.action == "s3:ListBucket":
            resource = _arn(record.bucket)
        context = dict(record.context)
        if not simulator.allows(principal, record.action, resource, context):
            return record
        if record.note == "not found" and not simulator.allows(
            principal, "s3:ListBucket", _arn(record.bucket)
        ):
            return record
    return None
