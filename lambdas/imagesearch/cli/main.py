"""``imagesearch``: search, upload, backfill and inspect a deployment or local mode.

Target: ``--url URL`` (or env IMAGESEARCH_URL) for local mode or any endpoint;
otherwise the deployed CloudFormation stack ``--stack`` in ``--region`` with
``--profile``, whose API requests are SigV4-signed from the standard credential chain.
Exit codes: 0 success, 1 failure, 2 usage error; errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, TextIO

from imagesearch import __version__
from imagesearch import resources as r
from imagesearch.cli import commands
from imagesearch.cli.errors import CliError, UsageError, from_aws
from imagesearch.cli.target import Context

PROG = "imagesearch"
ENV_URL = "IMAGESEARCH_URL"
ENV_DEBUG = "IMAGESEARCH_DEBUG"
DEFAULT_PORT = 8000
DEFAULT_DROPBOX = "./dropbox"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_STATE_DIR = "./.imagesearch"
EMBEDDER_CHOICES = ("bedrock", "clip")
MAX_TOP_K = 100  # the API's limit (SPEC section 6)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _top_k(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= MAX_TOP_K:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_TOP_K}, not {number}")
    return number


def _score(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not -1.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between -1 and 1, not {value}")
    return number


def _port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"not a port number: {value}")
    return number


def _embedder(value: str) -> str:
    if value not in EMBEDDER_CHOICES:
        raise argparse.ArgumentTypeError(
            f"invalid choice: {value!r} (choose from {', '.join(EMBEDDER_CHOICES)})"
        )
    return value


def _weighted(default_weight: float, *, negative: bool = False) -> Any:
    """``TEXT`` or ``TEXT:WEIGHT`` -> (text, weight); a colon not followed by a number
    is part of the text. ``negative``: the weight's size counts, it always steers away."""

    def parse(value: str) -> tuple[str, float]:
        text, weight = value, default_weight
        head, sep, tail = value.rpartition(":")
        if sep:
            try:
                weight = float(tail)
            except ValueError:
                weight = default_weight  # "label: red": the colon is part of the text
            else:
                text = head
        if not text.strip():
            raise argparse.ArgumentTypeError(f"no text in {value!r}")
        if weight != weight or weight in (float("inf"), float("-inf")) or weight == 0:
            raise argparse.ArgumentTypeError(f"the weight must be a non-zero number: {value!r}")
        return text, -abs(weight) if negative else weight

    return parse


def _jobs(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if not 1 <= number <= commands.MAX_UPLOAD_JOBS:
        raise argparse.ArgumentTypeError(
            f"must be between 1 and {commands.MAX_UPLOAD_JOBS}, not {number}"
        )
    return number


def _dimension(value: str) -> int:
    if not value.strip().isdigit() or int(value) == 0:
        raise argparse.ArgumentTypeError(f"not a dimension: {value!r}")
    return int(value)


def _target_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """Global options, accepted before and after the subcommand (``suppress``: the
    subcommand's copy only sets a value when given, so it never hides the global one)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group = parser.add_argument_group("target")
    group.add_argument(
        "--url",
        default=default(None),
        help=f"search API base URL, e.g. http://127.0.0.1:8000 (env {ENV_URL})",
    )
    group.add_argument(
        "--stack",
        default=default(r.DEFAULT_STACK_NAME),
        help=f"deployed CloudFormation stack when no --url (default {r.DEFAULT_STACK_NAME})",
    )
    group.add_argument("--region", default=default(None), help="AWS region of the stack")
    group.add_argument("--profile", default=default(None), help="AWS profile (else AWS_PROFILE)")
    shown = parser.add_argument_group("output")
    shown.add_argument(
        "--output",
        "-o",
        choices=commands.OUTPUT_FORMATS,
        default=default(None),
        help="json (the API's answer, for scripts), table or text (default: each command's"
        " readable form)",
    )
    shown.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="same as --output json",
    )


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if environ is None else environ
    parser = _Parser(
        prog=PROG,
        description="Multimodal image search: client of a deployed stack or of local mode.",
        epilog=f"Without --url (or {ENV_URL}) the deployed stack is used: its outputs give the"
        " API URL and resources, and API requests are signed with your AWS credentials.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _target_options(parser, suppress=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        child = sub.add_parser(name, help=help_text, description=help_text)
        _target_options(child, suppress=True)
        return child

    search = command("search", "search images by text, by an image file or by an indexed image")
    search.add_argument("text", nargs="?", metavar="TEXT", help="what to look for")
    search.add_argument("--image", metavar="PATH", help="query image file (joint with TEXT)")
    search.add_argument("--image-id", metavar="ID", help="more like this indexed image")
    search.add_argument("--top-k", type=_top_k, default=10, metavar="N", help="results (1-100)")
    search.add_argument("--min-score", type=_score, metavar="S", help="cosine score cut-off")
    search.add_argument("--prefix", metavar="P", help="only keys starting with P")
    search.add_argument(
        "--not",
        dest="negative",
        action="append",
        type=_weighted(commands.NOT_WEIGHT, negative=True),
        default=[],
        metavar="TEXT[:W]",
        help=f"steer away from TEXT (weight -{commands.NOT_WEIGHT} unless given; repeatable)",
    )
    search.add_argument(
        "--also",
        action="append",
        type=_weighted(1.0),
        default=[],
        metavar="TEXT[:W]",
        help="add TEXT with weight W (default 1; negative steers away; repeatable),"
        ' e.g. --also "sunset:0.5"',
    )

    upload = command("upload", "upload image files or directories (recursively)")
    upload.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories")
    upload.add_argument("--prefix", default="", metavar="P", help="folder below the upload prefix")
    upload.add_argument(
        "--jobs",
        "-j",
        type=_jobs,
        default=commands.UPLOAD_JOBS,
        metavar="N",
        help=f"parallel uploads (default {commands.UPLOAD_JOBS})",
    )
    upload.add_argument(
        "--dryrun",
        action="store_true",
        help="show what would be uploaded and skipped, upload nothing",
    )

    backfill = command("backfill", "enqueue every stored image for ingest, as if just uploaded")
    backfill.add_argument(
        "--force",
        action="store_true",
        help="re-embed records made with another model or dimension (after a model change),"
        " and ask the model again about images it refused",
    )

    command("status", "counts, queue depths, the latest rejections and failures, dead letters")

    redrive = command(
        "redrive", "send the dead-letter queue's messages back to the ingest queue (after a fix)"
    )
    redrive.add_argument(
        "--dryrun", action="store_true", help="list what would be sent back, move nothing"
    )

    reindex = command(
        "reindex",
        "copy the catalog's vectors into the S3 Vectors index (no model calls; resumable)",
    )
    reindex.add_argument(
        "--full", action="store_true", help="rewrite every vector, also those already there"
    )
    get = command("get", "show one image record")
    get.add_argument("image_id", metavar="ID")

    delete = command("delete", "delete one image (gone from search at once)")
    delete.add_argument("image_id", metavar="ID")

    completion = sub.add_parser(
        "completion",
        help="print a shell completion script",
        description='Print a completion script: eval "$(imagesearch completion bash)" in'
        ' ~/.bashrc, or imagesearch completion zsh > "${fpath[1]}/_imagesearch"',
    )
    completion.add_argument("shell", choices=("bash", "zsh"))

    local = command("local", "run the whole product on this machine (SPEC section 8)")
    local.add_argument(
        "--port",
        type=_port,
        default=env.get("PORT") or DEFAULT_PORT,
        help=f"HTTP port (default {DEFAULT_PORT}, env PORT)",
    )
    local.add_argument(
        "--dropbox",
        default=env.get("DROPBOX") or DEFAULT_DROPBOX,
        metavar="DIR",
        help=f"drop folder mirrored into the bucket (default {DEFAULT_DROPBOX}, env DROPBOX)",
    )
    local.add_argument(
        "--embedder",
        type=_embedder,
        choices=EMBEDDER_CHOICES,
        default=env.get("EMBEDDER") or "bedrock",
        help="bedrock (default: Titan through your AWS configuration) or clip (local model,"
        " optional extra); env EMBEDDER",
    )
    local.add_argument(
        "--state-dir",
        default=env.get("STATE_DIR") or DEFAULT_STATE_DIR,
        metavar="DIR",
        help="where records, uploads and queued work survive restarts (default"
        f" {DEFAULT_STATE_DIR}, env STATE_DIR)",
    )
    local.add_argument(
        "--vector-store",
        choices=r.VECTOR_STORES,
        default=env.get(r.ENV_VECTOR_STORE) or r.CONTEXT_DEFAULTS["vectorStore"],
        help="dynamodb (default: the embedded tier) or s3vectors (the scale tier, on the"
        " project's S3 Vectors emulator); env VECTOR_STORE",
    )
    # Flag only: shells set HOST to the machine's name.
    local.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}); 0.0.0.0 serves other devices"
        " on your network, with no auth",
    )
    local.add_argument(
        "--model-id",
        default=env.get("MODEL_ID") or None,
        metavar="ID",
        help="Bedrock model or inference profile id (default the stack's, env MODEL_ID)",
    )
    local.add_argument(
        "--dimension",
        type=_dimension,
        default=env.get("EMBEDDING_DIMENSION") or None,
        metavar="N",
        help="embedding dimension of that model (default 1024, env EMBEDDING_DIMENSION)",
    )
    return parser


def dispatch(args: argparse.Namespace, ctx: Context, out: TextIO, err: TextIO) -> int:
    name = args.command
    if name == "search":
        return commands.cmd_search(args, ctx, out, err)
    if name == "get":
        return commands.cmd_get(args, ctx, out)
    if name == "delete":
        return commands.cmd_delete(args, ctx, out)
    if name == "upload":
        return commands.cmd_upload(args, ctx, out, err)
    if name == "backfill":
        return commands.cmd_backfill(args, ctx, out, err)
    if name == "status":
        return commands.cmd_status(args, ctx, out)
    if name == "reindex":
        from imagesearch.cli.vectors import cmd_reindex

        return cmd_reindex(args, ctx, out, err)
    if name == "redrive":
        return commands.cmd_redrive(args, ctx, out, err)
    raise UsageError(f"unknown command {name!r}")  # argparse already refused it


def run(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    http: Any | None = None,
    boto_session: Any | None = None,
    clients: Mapping[str, Any] | None = None,
) -> int:
    """The CLI with injectable environment, streams and clients; returns the exit code."""
    env = os.environ if environ is None else environ
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    try:
        args = build_parser(env).parse_args(argv)
    except SystemExit as exit_:  # --help, or a usage error already printed
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 2
    try:
        if args.command == "local":
            return commands.cmd_local(args)
        if args.command == "completion":
            from imagesearch.cli.completion import completion_script

            out.write(completion_script(build_parser({}), args.shell))
            return 0
        ctx = Context(
            url=args.url or env.get(ENV_URL) or None,
            stack_name=args.stack,
            region=args.region or env.get("AWS_REGION") or None,
            profile=args.profile,
            http=http,
            boto_session=boto_session,
            clients=clients,
        )
        return dispatch(args, ctx, out, err)
    except CliError as error:
        return _fail(err, str(error), error.exit_code)
    except KeyboardInterrupt:
        return _fail(err, "interrupted", 130)
    except BrokenPipeError:
        return 1  # stdout closed early (`| head`): nothing left to say
    except Exception as error:
        from botocore.exceptions import BotoCoreError, ClientError

        if isinstance(error, BotoCoreError | ClientError):
            return _fail(err, str(from_aws(error)), 1)
        if env.get(ENV_DEBUG):
            raise
        return _fail(
            err,
            f"unexpected error: {type(error).__name__}: {error}"
            f" (set {ENV_DEBUG}=1 for a traceback)",
            1,
        )


def _fail(err: TextIO, message: str, code: int) -> int:
    err.write(f"{PROG}: error: {message}\n")
    err.flush()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Console script entry point (``imagesearch = imagesearch.cli.main:main``)."""
    code = run(argv)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`): silence the flush at interpreter exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


if __name__ == "__main__":
    sys.exit(main())
