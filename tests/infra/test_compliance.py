"""cdk-nag (AwsSolutions) and cfn-lint on the synthesized template."""

from __future__ import annotations

import csv
import json
from typing import Any

from aws_cdk.assertions import Match
from cfnlint.api import lint
from cfnlint.config import ManualArgs

from tests.infra.conftest import Synthesized

# Rules whose suppressions must say which finding they cover (granular rules).
GRANULAR_RULES = {"AwsSolutions-IAM4", "AwsSolutions-IAM5"}
# cfn-lint warnings we accept: W3005 flags the redundant DependsOn CDK writes next to a
# Ref/GetAtt (harmless, and not ours to change). Every other warning fails the test.
ACCEPTED_CFN_LINT_WARNINGS = {"W3005"}
LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]


def test_no_unsuppressed_nag_errors_or_warnings(any_app: Synthesized) -> None:
    nag = Match.string_like_regexp("AwsSolutions-.*")
    assert any_app.annotations.find_error("*", nag) == []
    assert any_app.annotations.find_warning("*", nag) == []


def test_nag_ran_and_every_finding_is_compliant_or_suppressed(any_app: Synthesized) -> None:
    # The report proves the aspect really ran over this stack.
    (report,) = any_app.outdir.glob(f"AwsSolutions-*{any_app.stack.stack_name}-NagReport.csv")
    with report.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) > 50
    assert {row["Compliance"] for row in rows} <= {"Compliant", "Suppressed"}
    suppressed = {row["Rule ID"] for row in rows if row["Compliance"] == "Suppressed"}
    assert {"AwsSolutions-IAM5", "AwsSolutions-APIG4"} <= suppressed


def _suppressions(app: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for logical_id, resource in app.json["Resources"].items():
        metadata = resource.get("Metadata", {}).get("cdk_nag", {})
        for rule in metadata.get("rules_to_suppress", []):
            found.append((logical_id, rule))
    return found


def test_every_suppression_is_scoped_and_explained(any_app: Synthesized) -> None:
    suppressions = _suppressions(any_app)
    assert suppressions
    for logical_id, rule in suppressions:
        assert len(rule["reason"]) >= 40, (logical_id, rule)
        if rule["id"] in GRANULAR_RULES:
            assert rule.get("applies_to"), f"{logical_id}: {rule['id']} without applies_to"
            assert all(finding != "*" for finding in rule["applies_to"])


def test_cfn_lint_finds_no_errors(any_app: Synthesized) -> None:
    template = json.dumps(any_app.json)

    matches = lint(template, config=ManualArgs(regions=LINT_REGIONS))

    report = "\n".join(f"{m.rule.id} {m.message} ({'/'.join(map(str, m.path))})" for m in matches)
    print(report or "cfn-lint: clean")
    errors = [m for m in matches if m.rule.id.startswith("E")]
    unexpected = [
        m
        for m in matches
        if not m.rule.id.startswith("E") and m.rule.id not in ACCEPTED_CFN_LINT_WARNINGS
    ]
    assert errors == [], report
    assert unexpected == [], report
