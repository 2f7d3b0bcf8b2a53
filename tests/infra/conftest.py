"""Infra tier: synthesize the real CDK app (with cdk.json's feature flags and cdk-nag).

Synthesis is slow (jsii), so each configuration is synthesized once per session and
shared. Bundling is skipped (``aws:cdk:bundling-stacks: []``) everywhere except the one
bundling test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIP_BUNDLING: dict[str, Any] = {"aws:cdk:bundling-stacks": []}

# What `cdk -c key=value` passes: every value a string.
CLI_STYLE_CONTEXT = {
    "retainData": "false",
    "embeddingDimension": "384",
    "ingestMaxConcurrency": "7",
    "searchMaxConcurrency": "20",
    "uploadPrefix": "drop/photos/",
    "captionMode": "joint",
    "apiRateLimit": "12.5",
    "apiBurstLimit": "25",
    "corsOrigins": "https://photos.example.com, http://localhost:5173",
    "noncurrentVersionDays": "7",
}


def cdk_json_context() -> dict[str, Any]:
    """The context of cdk.json (the SPEC keys and the feature flags)."""
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


@dataclass
class Synthesized:
    """One synthesized app: the stack, its template and its annotations."""

    outdir: Path
    app: Any
    stack: Any
    template: Any  # aws_cdk.assertions.Template
    annotations: Any  # aws_cdk.assertions.Annotations

    @property
    def json(self) -> dict[str, Any]:
        return self.template.to_json()

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {
            logical_id: resource
            for logical_id, resource in self.json["Resources"].items()
            if resource["Type"] == resource_type
        }

    def logical_id(self, construct: Any) -> str:
        return self.stack.resolve(construct.node.default_child.logical_id)


def synthesize(outdir: Path, **context: Any) -> Synthesized:
    """Build the app exactly as app.py does, with extra context on top of cdk.json's."""
    import aws_cdk as cdk
    from aws_cdk.assertions import Annotations, Template

    from app import build_app
    from imagesearch import resources as r

    app = cdk.App(context={**cdk_json_context(), **context}, outdir=str(outdir))
    build_app(app)
    stack = app.node.find_child(r.DEFAULT_STACK_NAME)
    assert isinstance(stack, cdk.Stack)
    template = Template.from_stack(stack)  # runs the aspects (cdk-nag) and synthesizes
    return Synthesized(outdir, app, stack, template, Annotations.from_stack(stack))


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Synthesized]:
    """Synthesize with extra context, cached per distinct context for the session."""
    cache: dict[str, Synthesized] = {}

    def get(**context: Any) -> Synthesized:
        key = json.dumps(context, sort_keys=True)
        if key not in cache:
            cache[key] = synthesize(tmp_path_factory.mktemp("cdk.out"), **SKIP_BUNDLING, **context)
        return cache[key]

    return get


@pytest.fixture(scope="session")
def default_app(synth: Callable[..., Synthesized]) -> Synthesized:
    """cdk.json's defaults (retainData true)."""
    return synth()


@pytest.fixture(scope="session")
def cli_app(synth: Callable[..., Synthesized]) -> Synthesized:
    """Non-default values given as strings, like `cdk -c retainData=false ...`."""
    return synth(**CLI_STYLE_CONTEXT)


@pytest.fixture(params=["default", "cli"], scope="session")
def any_app(request: pytest.FixtureRequest) -> Iterator[Synthesized]:
    yield request.getfixturevalue(f"{request.param}_app")
