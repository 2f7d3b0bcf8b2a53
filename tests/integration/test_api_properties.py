"""Property-based test of every route in the API's own OpenAPI document (issue 9).

Requests are generated with hypothesis from ``GET /openapi.json`` (bodies and
parameters from their JSON schemas, valid and broken, plus search bodies that pass
the cross-field rules), then sent as API Gateway events through the real handler,
on moto and the fake Bedrock. Whatever arrives, the API never answers 5xx, and every
4xx is ``{"message": "..."}`` in JSON. ``MIN_REQUESTS`` requests per run; in CI
(``CI`` set) the examples are derandomized so that a run is reproducible.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fakes import bedrock as fake
from fakes import imagefactory
from imagesearch import resources as r
from tests.integration.api_fixtures import (  # noqa: F401  (fixtures)
    Api,
    _module_api,
    shared_api_fixture,
    text_vector,
)

MIN_REQUESTS = 1000
EXAMPLES = MIN_REQUESTS  # hypothesis runs exactly this many when every example passes


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    base64_encoded: bool = False


# --- strategies from the OpenAPI document ---------------------------------------------------


def inline_refs(node: Any, components: dict[str, Any]) -> Any:
    """The schema with every ``#/components/schemas/X`` reference inlined."""
    if isinstance(node, dict):
        if "$ref" in node:
            name = node["$ref"].rsplit("/", 1)[-1]
            return inline_refs(components[name], components)
        return {k: inline_refs(v, components) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(v, components) for v in node]
    return node


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a JSON schema, for the subset pydantic writes into the document (types,
    anyOf, enum, bounds, lengths, patterns, items, properties). Unknown keywords are
    ignored: the other strategies send invalid values anyway."""
    if "anyOf" in schema:
        return st.one_of(*(from_schema(option) for option in schema["anyOf"]))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = schema.get("minimum"), schema.get("maximum")
        return st.integers(None if low is None else int(low), None if high is None else int(high))
    if kind == "number":
        return st.floats(
            schema.get("minimum"), schema.get("maximum"), allow_nan=False, allow_infinity=False
        )
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True)
        return st.text(
            min_size=schema.get("minLength", 0), max_size=min(schema.get("maxLength", 80), 1100)
        )
    if kind == "array":
        return st.lists(
            from_schema(schema.get("items", {})),
            min_size=schema.get("minItems", 0),
            max_size=min(schema.get("maxItems", 5), 10),
        )
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        required = set(schema.get("required", ()))
        return st.fixed_dictionaries(
            {name: from_schema(properties[name]) for name in properties if name in required},
            optional={
                name: from_schema(sub) for name, sub in properties.items() if name not in required
            },
        )
    return json_values()


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=12,
    )


SMALL_IMAGES = [
    base64.b64encode(imagefactory.jpeg(24, 16, (200, 30, 30))).decode(),
    base64.b64encode(imagefactory.png(16, 16)).decode(),
    base64.b64encode(imagefactory.pdf_bytes()).decode(),
    "data:image/png;base64," + base64.b64encode(imagefactory.png(8, 8)).decode(),
]

# Hostile texts that no schema describes (each was a 500 once, or nearly).
RAW_BODIES = [
    "",
    "{",
    "null",
    "[" * 2000,
    '{"text": "a", "top_k": ' + "9" * 4400 + "}",
    '{"queries": [{"text": "a", "weight": 1e37}]}',
    '{"queries": [{"text": "a", "weight": 1e400}]}',
    '{"text": "a", "min_score": NaN}',
    '{"text": "\\ud800"}',
    '{"text": "a"}' * 3,
]

CONTENT_TYPES = [
    *["application/json"] * 12,
    "APPLICATION/JSON",
    "application/json; charset=utf-8",
    "",
    "text/plain",
    "multipart/form-data",
    "multipart/form-data; boundary=xyz",
    "application/x-www-form-urlencoded",
]


def body_strategy(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    valid = from_schema(schema)

    def with_images(body: Any) -> st.SearchStrategy[Any]:
        if isinstance(body, dict) and "image" in body:
            return st.sampled_from(SMALL_IMAGES).map(lambda image: {**body, "image": image})
        return st.just(body)

    def broken(body: Any) -> st.SearchStrategy[Any]:
        # One field of a valid body replaced by any JSON value (or an unknown field added)
        if not isinstance(body, dict):
            return st.just(body)
        names = [*body, "unknown"]
        return st.tuples(st.sampled_from(names), json_values()).map(
            lambda pair: {**body, pair[0]: pair[1]}
        )

    # one_of picks its branches evenly: repeats weight the ones that reach deepest.
    documents = st.one_of(
        valid, valid, valid.flatmap(with_images), valid.flatmap(broken), json_values()
    ).map(json.dumps)  # NaN and Infinity included: json.dumps writes them
    return st.one_of(
        documents, documents, documents, st.sampled_from(RAW_BODIES), st.text(max_size=200)
    )


def parameter_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """A query or path value as API Gateway hands it over: always a string."""
    typed = (
        from_schema(schema)
        .filter(lambda v: v is not None)
        .map(lambda v: v if isinstance(v, str) else json.dumps(v))
    )
    return st.one_of(typed, st.text(max_size=60), st.just("9" * 4400), st.just("é" * 1024))


def operation_strategy(
    path: str, method: str, operation: dict[str, Any], components: dict[str, Any], ids: list[str]
) -> st.SearchStrategy[Request]:
    query: dict[str, st.SearchStrategy[str]] = {}
    path_values: dict[str, st.SearchStrategy[str]] = {}
    for parameter in operation.get("parameters", []):
        values = parameter_value(inline_refs(parameter["schema"], components))
        if parameter["in"] == "path":
            path_values[parameter["name"]] = st.sampled_from(ids) | values.filter(bool)
        elif parameter["in"] == "query":
            query[parameter["name"]] = values
    body_schema = (
        operation.get("requestBody", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema")
    )
    body = body_strategy(inline_refs(body_schema, components)) if body_schema else st.none()

    @st.composite
    def build(draw: Callable[..., Any]) -> Request:
        concrete = path
        for name, values in path_values.items():
            concrete = concrete.replace("{" + name + "}", quote(draw(values), safe=""))
        chosen = draw(st.lists(st.sampled_from(sorted(query)), unique=True)) if query else []
        raw = draw(body)
        headers = {}
        encoded = False
        if raw is not None:
            headers["Content-Type"] = draw(st.sampled_from(CONTENT_TYPES))
            # Some events come base64-encoded (binary media types), as API Gateway sends them
            encoded = draw(st.sampled_from([False] * 9 + [True]))
            if encoded:
                raw = base64.b64encode(raw.encode("utf-8")).decode("ascii")
        return Request(
            method=method.upper(),
            path=concrete,
            query={name: draw(query[name]) for name in chosen},
            raw_body=raw,
            headers=headers,
            base64_encoded=encoded,
        )

    return build()


def answerable_searches(
    search: dict[str, Any], part: dict[str, Any], ids: list[str]
) -> st.SearchStrategy[Request]:
    """Search bodies that pass the model's cross-field rules (one input, or parts with
    one input each), so generation reaches embedding, weighting, filters and ranking.
    Field values come from the document's own schemas."""
    fields = search["properties"]
    text = from_schema(fields["text"]["anyOf"][0])
    image_id = st.sampled_from(ids) | from_schema(fields["image_id"]["anyOf"][0])
    image = st.sampled_from(SMALL_IMAGES)
    weight = from_schema(part["properties"]["weight"]).filter(bool) | st.sampled_from(
        [1e37, -1e37, 1e308, -1e308, 5e-324, 2.2e36]
    )
    one_input = st.one_of(
        text.map(lambda v: {"text": v}),
        image.map(lambda v: {"image": v}),
        image_id.map(lambda v: {"image_id": v}),
    )
    parts = st.lists(
        st.tuples(one_input, weight).map(lambda pair: {**pair[0], "weight": pair[1]}),
        min_size=1,
        max_size=part_count(search),
    ).map(lambda items: {"queries": items})
    filters = st.fixed_dictionaries(
        {},
        optional={
            name: from_schema(fields[name]).filter(lambda v: v is not None)
            for name in ("top_k", "min_score", "prefix", "content_type")
        },
    )
    bodies = st.tuples(st.one_of(one_input, parts), filters).map(lambda p: {**p[0], **p[1]})
    return bodies.map(
        lambda body: Request(
            method="POST",
            path="/search",
            raw_body=json.dumps(body),
            headers={"Content-Type": "application/json"},
        )
    )


def part_count(search: dict[str, Any]) -> int:
    return int(search["properties"]["queries"]["anyOf"][0]["maxItems"])


def stray_requests(paths: list[str]) -> st.SearchStrategy[Request]:
    """Unknown paths and methods a route does not have."""
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
    path = st.sampled_from(paths) | st.text(max_size=40).map(lambda t: "/" + quote(t))
    return st.builds(Request, method=methods, path=path)


# --- the property ------------------------------------------------------------------------------


def check(response: Any, request: Request) -> None:
    assert response.status < 500, (request, response.status, response.body)
    if response.status >= 400:
        assert response.headers.get("content-type") == "application/json", (request, response)
        assert isinstance(response.body, dict) and set(response.body) == {"message"}, (
            request,
            response.body,
        )
        assert isinstance(response.body["message"], str) and response.body["message"]


@pytest.fixture(scope="module")
def _seeded(_module_api: Api) -> list[str]:  # noqa: F811  (the imported fixture)
    """A few records of each status, so ids, listings and searches find something."""
    ids = []
    for n in range(3):
        ids.append(_module_api.seed(f"p/{n}.jpg", text_vector(fake, f"thing {n}")).image_id)
    ids.append(_module_api.seed("p/bad.svg", None, status=r.STATUS_REJECTED, reason="SVG").image_id)
    return ids


def test_no_generated_request_gets_a_5xx_and_every_4xx_is_a_message(
    shared_api: Api, _seeded: list[str]
) -> None:
    # Given the API's own OpenAPI document
    document = shared_api.get("/openapi.json").body
    components = document["components"]["schemas"]
    ids = _seeded
    strategies = [
        operation_strategy(path, method, operation, components, ids)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]
    assert len(strategies) >= 7  # every route
    searches = answerable_searches(
        inline_refs(components["SearchRequest"], components),
        inline_refs(components["QueryPart"], components),
        ids,
    )
    requests = st.one_of(*strategies, searches, searches, stray_requests(list(document["paths"])))
    sent = 0

    # When thousands of requests are generated from it
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=bool(os.environ.get("CI")),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests)
    def property_holds(request: Request) -> None:
        nonlocal sent
        sent += 1
        response = shared_api.call(
            request.method,
            request.path,
            raw_body=request.raw_body,
            query=request.query or None,
            headers=request.headers,
            base64_encoded=request.base64_encoded,
        )
        # Then no 5xx, and every 4xx is {"message": ...} in JSON
        check(response, request)

    property_holds()
    assert sent >= MIN_REQUESTS
