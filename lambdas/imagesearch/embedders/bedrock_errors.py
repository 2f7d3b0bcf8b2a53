"""What a Bedrock error message asks for: a new image, or an operator.

Bedrock answers several configuration faults with ``ValidationException`` (HTTP 400),
the code it also uses for an image it cannot take: "The provided model identifier is
invalid.", "Invocation of model ID ... with on-demand throughput isn't supported. Retry
your request with the ID or ARN of an inference profile that contains this model.",
"Operation not allowed", "This model version has reached the end of its life...". The
code alone cannot say which, so the message decides, in this order:

1. ``OPERATOR_RULES``: a fault of the deployment (model id, region, inference profile,
   access, output dimension, end of life...) -> configuration error, whatever the code;
2. ``INPUT_RULES``: clearly about this input (image too large or too many pixels,
   unsupported format, unreadable image data, text too long, content refused) -> the
   model refused the input: the record ends ``rejected`` with the model's message;
3. ``SCHEMA_RULE``: our request does not match the model's schema (a wire-format fault
   of this release, not of the image) -> configuration error;
4. anything else -> configuration error too (``UNRECOGNISED``): a ``rejected`` record is
   final and silent (no retry, no DLQ, no alarm), while ``failed`` is retried, parked in
   the DLQ and alarmed, so an unknown message errs on the side that cannot lose an image.

The tables are matched case-insensitively; ``tests/unit/test_bedrock_errors.py`` holds the
documented and observed messages per model with their expected classification.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Fault = Literal["input", "operator"]


@dataclass(frozen=True)
class Rule:
    """One kind of message: whose fault it is, the cause in a few words and the fix
    (``{model}`` and ``{region}`` are filled in)."""

    name: str
    fault: Fault
    pattern: re.Pattern[str]
    cause: str
    fix: str = ""

    def matches(self, message: str) -> bool:
        return self.pattern.search(message) is not None


def _rule(name: str, fault: Fault, pattern: str, cause: str, fix: str = "") -> Rule:
    return Rule(name, fault, re.compile(pattern, re.IGNORECASE), cause, fix)


OPERATOR_RULES: tuple[Rule, ...] = (
    _rule(
        "inference_profile",
        "operator",
        r"on-demand throughput|inference profile",
        "{model} cannot be called on demand by its model id",
        "Deploy with the id of a cross-region inference profile that contains it "
        "(us., eu., apac. or global. followed by the model id; see docs/models.md).",
    ),
    _rule(
        "not_offered",
        "operator",
        r"model identifier is invalid|could not resolve the foundation model|"
        r"model (id |identifier )?(is )?not (found|supported|available|offered)|"
        r"not (supported|available|offered) in (this|the|your) region|unsupported model",
        "Bedrock does not offer {model} in this region",
        "Check the model id and deploy to a region where {model} is available.",
    ),
    _rule(
        "end_of_life",
        "operator",
        r"end of (its )?life|end-of-life|\blegacy\b|deprecated|no longer (supported|available)",
        "{model} has reached the end of its life on Bedrock",
        "Switch to a supported model (docs/models.md, 'Switch models').",
    ),
    _rule(
        "access",
        "operator",
        r"(don't|do not) have access|access to the model|not authori[sz]ed|access denied|"
        r"access is denied|aws-marketplace",
        "Bedrock denied access to {model}",
        "Enable model access for {model} in the Bedrock console in region {region} and allow "
        "bedrock:InvokeModel on it for the function's role.",
    ),
    _rule(
        "not_allowed",
        "operator",
        r"operation not allowed",
        "Bedrock does not allow this account to call {model}",
        "Check model access (use-case details, agreements) and the account's Bedrock quotas "
        "in region {region}.",
    ),
    _rule(
        "provisioned",
        "operator",
        r"provisioned throughput",
        "{model} needs provisioned throughput",
        "Use a model id that is offered on demand, or buy provisioned throughput.",
    ),
    _rule(
        "dimension",
        "operator",
        r"output_?dimension|embedding_?dimension|outputembeddinglength|embedding length|"
        r"dimension (is )?not supported (by|for) (this|the) model",
        "{model} does not take the configured output dimension",
        "Deploy with an embeddingDimension the model supports (docs/models.md).",
    ),
)

INPUT_RULES: tuple[Rule, ...] = (
    _rule(
        "image_too_large",
        "input",
        r"max(imum)? pixels|too many pixels|image (size|dimensions?) .*exceeds?|"
        r"image .*too (large|big)|"
        r"exceeds? (the )?max(imum)? (image|pixel|size|resolution)",
        "image too large",
    ),
    _rule(
        "unreadable_image",
        "input",
        r"unsupported image|image format|unable to process (the )?(provided )?image|"
        r"could not (process|decode|read) (the )?(provided )?image|invalid image|"
        r"not a valid image|corrupt|image (data|bytes) (is|are) (invalid|malformed)",
        "image the model cannot read",
    ),
    _rule(
        "text_too_long",
        "input",
        r"too many (input )?tokens|too long|maxlength|input token count|"
        r"exceeds? (the )?max(imum)? (number of )?tokens",
        "text too long",
    ),
    _rule(
        "content_refused",
        "input",
        r"content (filter|policy|moderation)|blocked by|harmful|inappropriate",
        "content the model refuses",
    ),
)

SCHEMA_RULE = _rule(
    "schema",
    "operator",
    r"malformed input request|extraneous key|required key|expected type|"
    r"not a valid enum|#/",
    "Bedrock says the request for {model} does not match the model's schema",
    "This release's request format does not fit the model as deployed: report it "
    "(the message above says which field).",
)

UNRECOGNISED = Rule(
    "unrecognised",
    "operator",
    re.compile(""),
    "Bedrock refused the request for {model} with a message this release does not know as "
    "a problem of the image",
    "Not rejected, because a rejection is final: the message is retried and then parked in "
    "the dead-letter queue. If the image is at fault, delete or replace the object; otherwise "
    "fix what the message names and redrive.",
)


def operator_rule(message: str) -> Rule | None:
    """The operator's fault this message names, whatever its error code; or None."""
    return next((rule for rule in OPERATOR_RULES if rule.matches(message)), None)


def classify_validation(message: str) -> Rule:
    """The rule a ValidationException's message falls under (see the module docstring)."""
    found = operator_rule(message)
    if found is not None:
        return found
    found = next((rule for rule in INPUT_RULES if rule.matches(message)), None)
    if found is not None:
        return found
    return SCHEMA_RULE if SCHEMA_RULE.matches(message) else UNRECOGNISED
