"""Every AWS call each function's code made during the suite is allowed by that
function's role in the synthesized template (iam-simulate, AWS's evaluation logic).

`make test` runs the suite with ``IMAGESEARCH_IAM_RECORD=<dir>`` (tests/conftest.py and
local mode's subprocesses record the handlers' calls), then this file with
``IMAGESEARCH_IAM_CALLS=<dir>``. The report (call site -> action -> resource, and the
grants no call needed) is printed and written beside the calls.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from imagesearch import resources as r
from stacks.config import ConfigError
from tests.infra.conftest import SKIP_BUNDLING, synthesize
from tests.support.iam.conformance import Report, evaluate
from tests.support.iam.recorder import read_calls

ENV_CALLS = "IMAGESEARCH_IAM_CALLS"

pytestmark = pytest.mark.skipif(
    not os.environ.get(ENV_CALLS),
    reason=f"runs after the suite with {ENV_CALLS}=<dir of recorded calls> (make test)",
)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    directory = Path(os.environ[ENV_CALLS])
    calls = read_calls(directory)
    assert calls, (
        f"no calls recorded in {directory}: was the suite run with IMAGESEARCH_IAM_RECORD?"
    )

    def template(context: dict[str, Any]) -> dict[str, Any]:
        try:
            app = synthesize(tmp_path_factory.mktemp("cdk.out"), **SKIP_BUNDLING, **context)
        except ConfigError as error:
            raise ValueError(str(error)) from error
        return app.json

    result = evaluate(calls, template)
    text = result.render()
    (directory / "report.txt").write_text(text + "\n", encoding="utf-8")
    print("\n" + text)  # shown by -s / -rP; always in report.txt
    return result


def test_every_recorded_call_is_allowed_by_its_functions_role(report: Report) -> None:
    denied = sorted(
        {
            f"{v.function}: {v.site} {v.operation} needs {v.request.describe()} ({v.context})"
            for v in report.denied
        }
    )
    assert not denied, "calls the deployed role would refuse:\n" + "\n".join(denied)


def test_every_grant_to_the_functions_code_is_needed_by_a_recorded_call(report: Report) -> None:
    unused = [f"{function} {sid}: {action}" for function, sid, action in report.unused_by_code()]
    assert not unused, "granted but no call needs it (remove it, or test the path):\n" + "\n".join(
        unused
    )


def test_calls_were_recorded_for_each_function_on_both_tiers_in_a_switch_and_with_a_profile(
    report: Report,
) -> None:
    seen = {(v.function, v.context) for v in report.verdicts}

    def functions(predicate: Any) -> set[str]:
        return {function for function, context in seen if predicate(json.loads(context))}

    def tier(name: str) -> Any:
        return lambda c: c.get("vectorStore", r.CONTEXT_DEFAULTS["vectorStore"]) == name

    assert {"ingest", "search", "maintenance"} <= functions(tier("dynamodb"))
    assert {"ingest", "search"} <= functions(tier("s3vectors"))
    assert {"ingest", "search", "maintenance"} <= functions(lambda c: "previousModelId" in c)
    assert {"ingest", "search"} <= functions(
        lambda c: r.split_model_id(c.get("modelId", ""))[0] is not None
    )
    assert not report.undeployable, (
        f"recorded under deployments synth refuses: {report.undeployable}"
    )
