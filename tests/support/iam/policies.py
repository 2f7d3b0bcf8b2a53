"""Each function's role policy, read out of a synthesized template and resolved with
the names and region of the deployment a test ran under.

CloudFormation fills in names at deploy time (``Ref``, ``Fn::GetAtt``); the functions
learn them from their environment. So the names a test's calls used are mapped back
onto the template through the functions' environment variables (``IMAGES_TABLE`` is
``{"Ref": <table>}`` in the template and ``images-test`` in the test), and every ARN
the policies build from those resources is derived from them as CloudFormation would.
A reference no environment variable names stays unresolved and matches no call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from tests.support.iam.recorder import HANDLER_FUNCTIONS
from tests.support.iam.requests import ACCOUNT, PARTITION


@dataclass(frozen=True)
class FunctionPolicy:
    function: str  # "ingest" | "search" | "maintenance"
    role: str  # the role's logical id
    document: dict[str, Any]  # the role's statements, resolved


def function_policies(
    template: dict[str, Any], env: dict[str, str], region: str
) -> dict[str, FunctionPolicy]:
    resolver = _Resolver(template, region)
    functions = _functions(template)
    for _, properties in functions.values():
        variables = properties.get("Environment", {}).get("Variables", {})
        for name, expression in variables.items():
            if name in env:
                resolver.learn(expression, env[name])
    policies: dict[str, FunctionPolicy] = {}
    for function, (role, _) in functions.items():
        statements: list[dict[str, Any]] = []
        for resource in template["Resources"].values():
            if resource["Type"] != "AWS::IAM::Policy":
                continue
            if {"Ref": role} not in resource["Properties"].get("Roles", []):
                continue
            statements.extend(resource["Properties"]["PolicyDocument"]["Statement"])
        role_properties = template["Resources"][role]["Properties"]
        if role_properties.get("ManagedPolicyArns") or role_properties.get("Policies"):
            raise AssertionError(f"{role}: managed or inline policies are not evaluated here")
        document = {"Version": "2012-10-17", "Statement": resolver.resolve(statements)}
        policies[function] = FunctionPolicy(function, role, document)
    return policies


def _functions(template: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for resource in template["Resources"].values():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        handler = str(properties.get("Handler", ""))
        module = handler.removeprefix("imagesearch.handlers.").removesuffix(".handler")
        if handler.startswith("imagesearch.handlers.") and module in HANDLER_FUNCTIONS:
            role = properties["Role"]["Fn::GetAtt"][0]
            found[HANDLER_FUNCTIONS[module]] = (role, properties)
    return found


class Unresolved(Exception):
    pass


class _Resolver:
    def __init__(self, template: dict[str, Any], region: str) -> None:
        self.resources: dict[str, Any] = template["Resources"]
        self.region = region
        self.names: dict[str, str] = {}  # logical id -> physical name (Ref of most types)
        self.literals: dict[str, str] = {}  # literal name in the template -> the test's

    # -- learning names from the environment ----------------------------------------

    def learn(self, expression: Any, value: str) -> None:
        """``expression`` evaluates to ``value``: when it names one resource, that
        resource's physical name follows (a queue's Ref is its URL: the last segment)."""
        if isinstance(expression, str):
            # A name the stack writes as a literal (the vector index's) may be another in
            # the test: the function knows it only from this variable.
            if expression != value:
                self.literals[expression] = value
            return
        referenced = _references(expression)
        if len(referenced) != 1:
            return
        (logical_id,) = referenced
        kind = self.resources.get(logical_id, {}).get("Type", "")
        self.names[logical_id] = (
            value.rstrip("/").rsplit("/", 1)[-1] if kind == "AWS::SQS::Queue" else value
        )

    # -- resolving --------------------------------------------------------------------

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, argument),) = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                return self._get_att(*argument)
            if key == "Fn::Join":
                separator, parts = argument
                return separator.join(str(self.resolve(part)) for part in parts)
            if key == "Fn::Select":
                index, items = argument
                return self.resolve(items)[int(index)]
            if key == "Fn::Split":
                separator, text = argument
                return str(self.resolve(text)).split(separator)
            if key == "Fn::Sub" and isinstance(argument, str):
                return self._sub(argument)
        return {key: self.resolve(item) for key, item in value.items()}

    def _sub(self, text: str) -> str:
        import re

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if "." in name:
                return str(self._get_att(*name.split(".", 1)))
            return str(self._ref(name))

        return re.sub(r"\$\{([^}!]+)\}", replace, text)

    def _ref(self, name: str) -> str:
        pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if name in pseudo:
            return pseudo[name]
        if name in self.names:
            kind = self.resources[name]["Type"]
            if kind == "AWS::SQS::Queue":
                return f"https://sqs.{self.region}.amazonaws.com/{ACCOUNT}/{self.names[name]}"
            return self.names[name]
        return f"UNRESOLVED:{name}"

    def _get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources.get(logical_id, {})
        kind = resource.get("Type", "")
        name = self.names.get(logical_id)
        if kind == "AWS::S3Vectors::Index" and attribute in ("IndexArn", "Arn"):
            properties = resource["Properties"]
            bucket_arn = self.resolve(properties["VectorBucketArn"])
            index_name = str(self.resolve(properties["IndexName"]))
            return f"{bucket_arn}/index/{self.literals.get(index_name, index_name)}"
        if name is None:
            return f"UNRESOLVED:{logical_id}.{attribute}"
        if kind == "AWS::S3::Bucket" and attribute == "Arn":
            return f"arn:{PARTITION}:s3:::{name}"
        if kind == "AWS::DynamoDB::Table" and attribute == "Arn":
            return f"arn:{PARTITION}:dynamodb:{self.region}:{ACCOUNT}:table/{name}"
        if kind == "AWS::SQS::Queue" and attribute == "Arn":
            return f"arn:{PARTITION}:sqs:{self.region}:{ACCOUNT}:{name}"
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return name
        if kind == "AWS::S3Vectors::VectorBucket" and attribute == "VectorBucketArn":
            return f"arn:{PARTITION}:s3vectors:{self.region}:{ACCOUNT}:bucket/{name}"
        return f"UNRESOLVED:{logical_id}.{attribute}"


def _references(expression: Any) -> set[str]:
    """Logical ids a template expression refers to (pseudo parameters left out)."""
    found: set[str] = set()
    if isinstance(expression, list):
        for item in expression:
            found |= _references(item)
    elif isinstance(expression, dict):
        for key, argument in expression.items():
            if key == "Ref" and isinstance(argument, str) and not argument.startswith("AWS::"):
                found.add(argument)
            elif key == "Fn::GetAtt":
                found.add(argument[0] if isinstance(argument, list) else argument.split(".")[0])
            else:
                found |= _references(argument)
    return found


def describe(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1, sort_keys=True)
