"""Recorded calls against the synthesized roles: the verdicts and the report."""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imagesearch import resources as r
from tests.support.iam.policies import FunctionPolicy, function_policies
from tests.support.iam.requests import IamRequest, iam_requests

ROOT = Path(__file__).resolve().parents[3]
EVALUATOR = Path(__file__).with_name("evaluate.mjs")

# Deployment environment -> the context keys the stack derives it from.
CONTEXT_OF_ENV = {
    r.ENV_VECTOR_STORE: "vectorStore",
    r.ENV_MODEL_ID: "modelId",
    r.ENV_EMBEDDING_DIMENSION: "embeddingDimension",
    r.ENV_UPLOAD_PREFIX: "uploadPrefix",
    r.ENV_CAPTION_MODE: "captionMode",
    r.ENV_PREVIOUS_MODEL_ID: "previousModelId",
    r.ENV_PREVIOUS_EMBEDDING_DIMENSION: "previousEmbeddingDimension",
}
_NUMBERS = ("embeddingDimension", "previousEmbeddingDimension")


def deployment_context(env: dict[str, str]) -> dict[str, Any]:
    """The cdk context that deploys functions with this environment."""
    context: dict[str, Any] = {}
    for name, key in CONTEXT_OF_ENV.items():
        if name in env:
            value = int(env[name]) if key in _NUMBERS else env[name]
            if value != r.CONTEXT_DEFAULTS.get(key):  # one deployment, however it is spelled
                context[key] = value
    return context


def label(context: dict[str, Any]) -> str:
    """``s3vectors, cohere.embed-v4:0 (1024), switching from ...`` plus other settings."""
    tier = context.get("vectorStore", r.CONTEXT_DEFAULTS["vectorStore"])
    model = context.get("modelId", r.CONTEXT_DEFAULTS["modelId"])
    dimension = context.get("embeddingDimension", r.CONTEXT_DEFAULTS["embeddingDimension"])
    text = f"{tier}, {model} ({dimension})"
    if "previousModelId" in context:
        previous = context.get("previousEmbeddingDimension", dimension)
        text += f", switching from {context['previousModelId']} ({previous})"
    shown = {
        "vectorStore",
        "modelId",
        "embeddingDimension",
        "previousModelId",
        "previousEmbeddingDimension",
    }
    others = [
        f"{k}={v}"
        for k, v in sorted(context.items())
        if k not in shown and v != r.CONTEXT_DEFAULTS.get(k)
    ]
    return text + (f", {', '.join(others)}" if others else "")


@dataclass(frozen=True)
class Verdict:
    function: str
    context: str  # json of the deployment context
    site: str
    operation: str
    request: IamRequest
    result: str
    allowed_by: tuple[str, ...]
    validation: str | None

    @property
    def allowed(self) -> bool:
        return self.result == "Allowed"


@dataclass
class Report:
    verdicts: list[Verdict] = field(default_factory=list)
    undeployable: dict[str, str] = field(default_factory=dict)  # context -> why synth refused
    substituted: dict[str, str] = field(default_factory=dict)  # checked at default dimensions
    policies: dict[str, dict[str, FunctionPolicy]] = field(default_factory=dict)  # by context

    @property
    def denied(self) -> list[Verdict]:
        return [v for v in self.verdicts if not v.allowed]

    def contexts(self) -> list[dict[str, Any]]:
        return [json.loads(c) for c in sorted({v.context for v in self.verdicts})]

    def unexercised(self) -> list[tuple[str, str, str]]:
        """(function, statement sid, action) granted in some evaluated deployment and
        never the reason any recorded call of that function was allowed."""
        used = {
            (v.function, sid, v.request.action.lower())
            for v in self.verdicts
            for sid in v.allowed_by
        }
        unused: set[tuple[str, str, str]] = set()
        for context, policies in self.policies.items():
            for function, policy in policies.items():
                if not any(v.function == function and v.context == context for v in self.verdicts):
                    continue  # no test ran this function under this deployment
                for statement in policy.document["Statement"]:
                    actions = statement["Action"]
                    for action in actions if isinstance(actions, list) else [actions]:
                        key = (function, statement.get("Sid", "?"), action.lower())
                        if key not in used:
                            unused.add((function, statement.get("Sid", "?"), action))
        return sorted(unused)

    def unused_by_code(self) -> list[tuple[str, str, str]]:
        return [
            u
            for u in self.unexercised()
            if not _used_by_lambda_service(u[2]) and u not in NEEDED_WITHOUT_A_CALL
        ]

    def render(self) -> str:
        lines = ["IAM conformance: recorded calls against each function's synthesized role", ""]
        for context in self.contexts():
            key = json.dumps(context, sort_keys=True)
            lines.append(f"## {label(context)}")
            rows: dict[tuple[str, str, str, str], list[bool]] = defaultdict(list)
            for v in self.verdicts:
                if v.context == key:
                    shape = f"{v.request.action} on {_shape(v.request.resource)}"
                    rows[(v.function, v.site, v.operation, shape)].append(v.allowed)
            for (function, site, operation, shape), allowed in sorted(rows.items()):
                mark = "ok    " if all(allowed) else "DENIED"
                lines.append(f"  {mark} {function:<11} {site} {operation} -> {shape}")
            lines.append("")
        if self.substituted:
            lines.append("Toy dimensions checked against the model's default dimension:")
            lines.extend(f"  {context}: {why}" for context, why in sorted(self.substituted.items()))
            lines.append("")
        if self.undeployable:
            lines.append("Deployments the stack refuses to synthesize (their calls not evaluated):")
            lines.extend(
                f"  {context}: {why}" for context, why in sorted(self.undeployable.items())
            )
            lines.append("")
        unchecked = sorted(
            {(v.request.action, v.validation) for v in self.verdicts if v.validation}
        )
        if unchecked:
            lines.append(
                "Evaluated without iam-simulate's validation (action unknown to its data):"
            )
            lines.extend(f"  {action}: {why}" for action, why in unchecked)
            lines.append("")
        unused = self.unexercised()
        service = [u for u in unused if _used_by_lambda_service(u[2])]
        known = [u for u in unused if u in NEEDED_WITHOUT_A_CALL]
        code = self.unused_by_code()
        lines.append("Granted, needed by Lambda itself (logs, tracing, the SQS event source):")
        lines.extend(f"  {function:<11} {sid}: {action}" for function, sid, action in service)
        lines.append("Granted for what a service does without a call of the function's:")
        lines.extend(
            f"  {f:<11} {sid}: {action}: {NEEDED_WITHOUT_A_CALL[(f, sid, action)]}"
            for f, sid, action in known
        )
        lines.append("Granted to the function's code but exercised by no recorded call:")
        lines.extend(f"  {function:<11} {sid}: {action}" for function, sid, action in code)
        if not code:
            lines.append("  (none)")
        return "\n".join(lines)


# Actions the Lambda service uses with the function's role: its event source mapping
# reads and deletes the queue's messages, it writes the logs and the X-Ray segments.
_LAMBDA_SERVICE_ACTIONS = frozenset(
    {
        "sqs:receivemessage",
        "sqs:deletemessage",
        "sqs:changemessagevisibility",
        "sqs:getqueueattributes",
        "logs:createlogstream",
        "logs:putlogevents",
        "xray:puttracesegments",
        "xray:puttelemetryrecords",
    }
)


# Grants a service uses on the function's behalf without a call of their own.
NEEDED_WITHOUT_A_CALL = {
    ("ingest", "ListUploadsFor404", "s3:ListBucket"): (
        "S3 answers a missing key with 404 instead of 403 only to a caller allowed to list "
        "(moto always answers 404)"
    ),
}


def _used_by_lambda_service(action: str) -> bool:
    return action.lower() in _LAMBDA_SERVICE_ACTIONS


def _shape(resource: str) -> str:
    """An S3 object ARN by its folder (one line for all thumbnails, say)."""
    if resource.startswith("arn:aws:s3:::") and "/" in resource:
        bucket_and_key = resource.removeprefix("arn:aws:s3:::")
        bucket, _, key = bucket_and_key.partition("/")
        folder = key.split("/", 1)[0] + "/" if "/" in key else ""
        return f"arn:aws:s3:::{bucket}/{folder}*"
    return resource


def evaluate(
    calls: Iterable[dict[str, Any]],
    synthesize: Callable[[dict[str, Any]], dict[str, Any]],
) -> Report:
    """Each call's IAM requests against its function's role in the template that
    ``synthesize(context)`` returns for the call's deployment (ValueError: undeployable)."""
    report = Report()
    templates: dict[str, dict[str, Any] | None] = {}
    policies: dict[tuple[str, str, str], dict[str, FunctionPolicy]] = {}
    pending: dict[tuple[str, str, str, str, IamRequest, str], None] = {}
    documents: dict[str, dict[str, Any]] = {}

    for call in calls:
        env = call["env"]
        context = json.dumps(deployment_context(env), sort_keys=True)
        if context not in templates:
            templates[context] = _synthesize(json.loads(context), synthesize, report, context)
        template = templates[context]
        if template is None:
            continue
        region = call["region"] or "us-east-1"
        names = json.dumps(env, sort_keys=True)
        key = (context, names, region)
        if key not in policies:
            policies[key] = function_policies(template, env, region)
            report.policies.setdefault(context, policies[key])
        policy = policies[key].get(call["function"])
        if policy is None:
            raise AssertionError(
                f"{call['function']} made AWS calls; the stack deploys no such function ({context})"
            )
        # One document per distinct policy: iam-simulate sees each once by name.
        body = json.dumps(policy.document, sort_keys=True).encode()
        document_name = f"{call['function']}-{hashlib.sha256(body).hexdigest()[:12]}"
        documents[document_name] = policy.document
        for request in iam_requests(call):
            pending[
                (
                    call["function"],
                    context,
                    call.get("site", "?"),
                    call["operation"],
                    request,
                    document_name,
                )
            ] = None

    keys = list(pending)
    results = _simulate(documents, [(k[5], k[4]) for k in keys])
    for (function, context, site, operation, request, _), outcome in zip(
        keys, results, strict=True
    ):
        report.verdicts.append(
            Verdict(
                function,
                context,
                site,
                operation,
                request,
                outcome["result"],
                tuple(outcome["allowedBy"]),
                outcome["validation"],
            )
        )
    return report


def _synthesize(
    context: dict[str, Any],
    synthesize: Callable[[dict[str, Any]], dict[str, Any]],
    report: Report,
    key: str,
) -> dict[str, Any] | None:
    """The template of a deployment. Tests that run a model at a toy dimension (8, say)
    are checked against the model's deployable dimension: no grant depends on it."""
    try:
        return synthesize(context)
    except ValueError as error:
        reason = str(error).splitlines()[0]
    deployable = {k: v for k, v in context.items() if k not in _NUMBERS}
    try:
        template = synthesize(deployable)
    except ValueError:
        report.undeployable[key] = reason
        return None
    report.substituted[key] = reason
    return template


def _simulate(
    documents: dict[str, dict[str, Any]], requests: list[tuple[str, IamRequest]]
) -> list[dict[str, Any]]:
    payload = {
        "policies": documents,
        "requests": [
            {
                "policy": name,
                "action": request.action,
                "resource": request.resource,
                "context": dict(request.context),
            }
            for name, request in requests
        ],
    }
    with tempfile.TemporaryFile() as stdin:
        stdin.write(json.dumps(payload).encode())
        stdin.seek(0)
        completed = subprocess.run(
            ["node", str(EVALUATOR)], stdin=stdin, capture_output=True, cwd=ROOT, check=False
        )
    if completed.returncode != 0:
        raise RuntimeError(f"iam-simulate failed: {completed.stderr.decode()[-2000:]}")
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


def by_function(report: Report) -> dict[str, list[Verdict]]:
    grouped: dict[str, list[Verdict]] = defaultdict(list)
    for verdict in report.verdicts:
        grouped[verdict.function].append(verdict)
    return grouped
