"""CLI errors: one readable line on stderr and an exit code, never a traceback."""

from __future__ import annotations

from typing import Any

NO_CREDENTIALS = "no AWS credentials found: set AWS_PROFILE or run aws configure"
NO_REGION = "no AWS region: pass --region or set AWS_REGION (or a region in your AWS profile)"

_ACCESS_DENIED = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "UnauthorizedOperation",
        "Forbidden",
        "403",
    }
)
_BAD_CREDENTIALS = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidToken",
    }
)


class CliError(Exception):
    """A failure the user can act on: printed as one line, exit code 1."""

    exit_code = 1


class UsageError(CliError):
    """The command line itself is wrong: exit code 2."""

    exit_code = 2


class ApiError(CliError):
    """The search API answered with an error status."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def from_aws(error: Exception) -> CliError:
    """Translate a boto3/botocore exception into one line the user can act on."""
    from botocore import exceptions as bex

    if isinstance(error, bex.NoCredentialsError | bex.PartialCredentialsError):
        return CliError(NO_CREDENTIALS)
    if isinstance(error, bex.ProfileNotFound):
        return CliError(f"{error}: check AWS_PROFILE / --profile (aws configure list-profiles)")
    if isinstance(error, bex.NoRegionError):
        return CliError(NO_REGION)
    if isinstance(error, bex.EndpointConnectionError | bex.ConnectTimeoutError):
        return CliError(f"cannot reach AWS: {error}")
    if isinstance(error, bex.ClientError):
        code, message = client_error_parts(error)
        operation = getattr(error, "operation_name", "") or "request"
        if code in _ACCESS_DENIED:
            return CliError(f"access denied ({operation}): {message}")
        if code in _BAD_CREDENTIALS:
            return CliError(f"AWS rejected the credentials ({code}): {message}")
        return CliError(f"AWS error {code} ({operation}): {message}")
    return CliError(f"AWS error: {error}")


def client_error_parts(error: Any) -> tuple[str, str]:
    details = getattr(error, "response", {}).get("Error", {})
    return str(details.get("Code", "Unknown")), str(details.get("Message", "")).strip()
