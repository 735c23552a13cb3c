"""AWS's IAM evaluation for the tests: every recorded request is decided by a real IAM policy
simulator (``@cloud-copilot/iam-simulate``, pinned in ``tests/iam/package.json``, run by Node
as one long-lived process), not by an evaluator of our own.

``make setup-iam`` (part of ``make test``) installs it with ``npm ci`` from the lock file.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent / "iam"

#: The account moto gives any credentials; the principals' ARNs live in it.
ACCOUNT = "123456789012"


#: AWS's default key policy: the account's root, i.e. IAM policies decide (KMS developer guide,
#: "Default key policy").
DEFAULT_KEY_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "Enable IAM User Permissions", "Effect": "Allow",
    "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
    "Action": "kms:*", "Resource": "*"}]}  # fmt: skip


@dataclass(frozen=True)
class Principal:
    """Who sends a request: a role's ARN and exactly the identity policies it carries."""

    name: str
    arn: str
    policies: tuple[tuple[str, str], ...]  # (name, JSON document)

    @classmethod
    def role(cls, name: str, **documents: dict) -> Principal:
        docs = tuple((n, json.dumps(d, sort_keys=True)) for n, d in sorted(documents.items()))
        return cls(name, f"arn:aws:iam::{ACCOUNT}:role/{name}", docs)

    def without(self, policy: str, sid: str) -> Principal:
        """The same principal with one statement removed (the negative tests)."""
        docs = []
        for name, text in self.policies:
            document = json.loads(text)
            if name == policy:
                kept = [s for s in document["Statement"] if s.get("Sid") != sid]
                assert len(kept) < len(document["Statement"]), f"no statement {sid} in {policy}"
                document["Statement"] = kept
            docs.append((name, json.dumps(document, sort_keys=True)))
        return Principal(self.name, self.arn, tuple(docs))


#: The account that owns the tests' buckets: sets their input up and reads the results.
OWNER = Principal.role("owner", all={"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})  # fmt: skip


@dataclass
class Simulator:
    """Decisions of the simulator, cached (requests repeat: the same key is read many times)."""

    _process: subprocess.Popen | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _cache: dict = field(default_factory=dict)
    _next: int = 0

    def start(self) -> Simulator:
        node = shutil.which("node")
        assert node, "Node.js is needed for the IAM simulator (Debian package 'nodejs')"
        assert (HERE / "node_modules" / "@cloud-copilot" / "iam-simulate").is_dir(), (
            "the IAM simulator is not installed: make setup-iam (npm ci --prefix tests/iam)"
        )
        self._process = subprocess.Popen(
            [node, str(HERE / "simulate.mjs")], cwd=HERE, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1,
        )  # fmt: skip
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.stdin.close()
            self._process.wait(timeout=10)
            self._process = None

    def decide(
        self, principal: Principal, action: str, resource: str, context: dict | None = None
    ) -> str:
        """``Allowed``, ``ImplicitlyDenied`` or ``ExplicitlyDenied``; a request the simulator
        cannot evaluate (an unknown action, a resource of the wrong type) fails the test."""
        context = context or {}
        key = (
            principal.policies,
            principal.arn,
            action,
            resource,
            json.dumps(context, sort_keys=True),
        )
        with self._lock:
            if key not in self._cache:
                self._next += 1
                ask = {
                    "id": self._next, "principal": principal.arn, "account": ACCOUNT,
                    "policies": [{"name": n, "policy": json.loads(p)}
                                 for n, p in principal.policies],
                    "action": action, "resource": resource, "context": context,
                }  # fmt: skip
                if action.startswith("kms:"):
                    ask["resourcePolicy"] = DEFAULT_KEY_POLICY
                self._process.stdin.write(json.dumps(ask) + "\n")
                answer = json.loads(self._process.stdout.readline())
                assert answer["id"] == ask["id"], answer
                if answer["result"] == "Error":
                    raise AssertionError(
                        f"the simulator cannot evaluate {action} on {resource} {context}: "
                        f"{json.dumps(answer['errors'])[:500]}"
                    )
                self._cache[key] = answer["result"]
            return self._cache[key]

    def resource_types(self, action: str) -> list[str]:
        """The resource types IAM knows for ``service:Action`` (empty: only ``*`` applies)."""
        with self._lock:
            self._next += 1
            self._process.stdin.write(
                json.dumps({"id": self._next, "resourceTypesOf": action}) + "\n"
            )
            return json.loads(self._process.stdout.readline())["result"]

    def allows(self, principal: Principal, action: str, resource: str, context=None) -> bool:
        return self.decide(principal, action, resource, context) == "Allowed"
