"""CLI argument parsing, usage errors, the ``local`` subcommand and import weight."""

from __future__ import annotations

import io
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from imagesearch.cli import commands
from imagesearch.cli.main import build_parser, run


def parse(argv: list[str], environ: dict[str, str] | None = None) -> Any:
    return build_parser(environ or {}).parse_args(argv)


def test_global_options_work_before_and_after_the_command() -> None:
    before = parse(["--url", "http://127.0.0.1:9000", "--region", "eu-west-1", "status"])
    after = parse(["status", "--url", "http://127.0.0.1:9000", "--region", "eu-west-1"])
    defaults = parse(["status"])

    for args in (before, after):
        assert (args.url, args.region, args.stack) == (
            "http://127.0.0.1:9000",
            "eu-west-1",
            "ImageSearch",
        )
    assert (defaults.url, defaults.region, defaults.profile) == (None, None, None)
    assert defaults.stack == "ImageSearch"


def test_search_arguments() -> None:
    args = parse(["search", "red shoe", "--top-k", "3", "--json", "--min-score", "0.2"])
    only_image = parse(["search", "--image", "q.jpg", "--image-id", "f" * 32])

    assert (args.text, args.top_k, args.json, args.min_score) == ("red shoe", 3, True, 0.2)
    assert (only_image.text, only_image.image, only_image.image_id) == (None, "q.jpg", "f" * 32)
    assert only_image.top_k == 10 and only_image.json is False


def test_upload_backfill_get_delete_arguments() -> None:
    upload = parse(["upload", "a.jpg", "dir", "--prefix", "shoes"])
    assert (upload.paths, upload.prefix) == (["a.jpg", "dir"], "shoes")
    assert parse(["backfill"]).force is False
    assert parse(["backfill", "--force"]).force is True
    assert parse(["get", "abc", "--json"]).image_id == "abc"
    assert parse(["delete", "abc"]).image_id == "abc"


def test_local_defaults_and_environment() -> None:
    defaults = parse(["local"])
    from_env = parse(
        ["local"], {"PORT": "9123", "DROPBOX": "/data/in", "EMBEDDER": "clip", "HOST": "laptop"}
    )
    explicit = parse(
        ["local", "--port", "7000", "--dropbox", "d", "--embedder", "bedrock", "--host", "0.0.0.0"],
        {"PORT": "9123", "EMBEDDER": "clip"},
    )

    assert (defaults.port, defaults.dropbox, defaults.embedder) == (8000, "./dropbox", "bedrock")
    assert defaults.host == "127.0.0.1"
    assert defaults.state_dir == "./.imagesearch"
    assert parse(["local"], {"STATE_DIR": "/s"}).state_dir == "/s"
    assert parse(["local", "--state-dir", "x"], {"STATE_DIR": "/s"}).state_dir == "x"
    # HOST is the shell's machine name, never a listen address: --host is a flag only.
    assert (from_env.port, from_env.dropbox, from_env.embedder, from_env.host) == (
        9123,
        "/data/in",
        "clip",
        "127.0.0.1",
    )
    assert (explicit.port, explicit.dropbox, explicit.embedder, explicit.host) == (
        7000,
        "d",
        "bedrock",
        "0.0.0.0",
    )


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        ([], {}, "the following arguments are required: COMMAND"),
        (["fly"], {}, "invalid choice: 'fly'"),
        (["search", "--top-k", "101", "x"], {}, "must be between 1 and 100, not 101"),
        (["search", "--top-k", "many", "x"], {}, "not a whole number: 'many'"),
        (["search", "--min-score", "2", "x"], {}, "must be between -1 and 1"),
        (["upload"], {}, "the following arguments are required: PATH"),
        (["get"], {}, "the following arguments are required: ID"),
        (["local", "--embedder", "gpt"], {}, "invalid choice: 'gpt'"),
        (["local"], {"EMBEDDER": "gpt"}, "invalid choice: 'gpt' (choose from bedrock, clip)"),
        (["local"], {"PORT": "eighty"}, "not a port number: 'eighty'"),
        (["local", "--port", "70000"], {}, "not a port number: 70000"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(
    argv: list[str], environ: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = run(argv, environ=environ)

    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("imagesearch")
    assert message in captured.err


def test_search_without_any_input_is_a_usage_error() -> None:
    err = io.StringIO()

    code = run(["--url", "http://127.0.0.1:8000", "search"], stderr=err)

    assert code == 2
    assert err.getvalue() == (
        "imagesearch: error: search needs TEXT, --image PATH or --image-id ID\n"
    )


def test_a_malformed_url_is_a_usage_error() -> None:
    err = io.StringIO()

    assert run(["--url", "127.0.0.1:8000", "status"], stderr=err) == 2
    assert "--url must be an http(s) URL" in err.getvalue()


def test_the_url_can_come_from_the_environment() -> None:
    from tests.unit.test_cli_http import fake_http

    session, transport = fake_http(lambda sent: (200, {"image_id": "a", "key": "k"}))

    code = run(
        ["get", "a"],
        environ={"IMAGESEARCH_URL": "http://127.0.0.1:8765"},
        http=session,
        stdout=io.StringIO(),
    )

    assert code == 0
    assert transport.sent[0].url == "http://127.0.0.1:8765/images/a"


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["--help"]) == 0
    assert "backfill" in capsys.readouterr().out


def test_local_calls_local_mode_run_with_the_contract_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[dict[str, Any]] = []
    fake = types.ModuleType("imagesearch.local")

    def fake_run(**options: Any) -> int:
        calls.append(options)
        return 3

    fake.run = fake_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "imagesearch.local", fake)

    code = run(["local", "--port", "8123", "--dropbox", "/tmp/drop"], environ={})

    assert code == 3
    assert len(calls) == 1
    names = ("port", "dropbox", "embedder", "host", "state_dir")
    assert {name: calls[0][name] for name in names} == {
        "port": 8123,
        "dropbox": Path("/tmp/drop"),
        "embedder": "bedrock",
        "host": "127.0.0.1",
        "state_dir": Path(".imagesearch"),
    }


def test_local_clip_without_the_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_find_spec = commands.importlib.util.find_spec
    monkeypatch.setattr(
        commands.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sentence_transformers" else real_find_spec(name, *a),
    )
    err = io.StringIO()

    code = run(["local", "--embedder", "clip"], environ={}, stderr=err)

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: --embedder clip needs the optional CLIP extra:"
        " pip install -r requirements-clip.txt\n"
    )


def test_local_mode_missing_dependency_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given local mode whose import needs moto, which is not installed
    class NeedsMoto(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            raise ModuleNotFoundError("No module named 'moto'", name="moto")

    monkeypatch.setitem(sys.modules, "imagesearch.local", NeedsMoto("imagesearch.local"))
    err = io.StringIO()

    code = run(["local"], environ={}, stderr=err)

    assert code == 1
    assert err.getvalue() == (
        "imagesearch: error: local mode needs moto: install its dependencies with make local"
        " (or pip install -r requirements-local.txt)\n"
    )


def test_unexpected_errors_are_one_line_unless_debugging(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any) -> int:
        raise ZeroDivisionError("bug")

    monkeypatch.setattr(commands, "cmd_get", boom)
    err = io.StringIO()

    assert run(["--url", "http://127.0.0.1:1", "get", "x"], environ={}, stderr=err) == 1
    assert err.getvalue() == (
        "imagesearch: error: unexpected error: ZeroDivisionError: bug"
        " (set IMAGESEARCH_DEBUG=1 for a traceback)\n"
    )
    with pytest.raises(ZeroDivisionError):
        run(["--url", "http://127.0.0.1:1", "get", "x"], environ={"IMAGESEARCH_DEBUG": "1"})


def test_importing_the_cli_stays_light() -> None:
    # A fresh interpreter: what `imagesearch --help` pays for at start-up.
    code = (
        "import sys, imagesearch.cli.main\n"
        "heavy = [m for m in ('numpy', 'PIL', 'moto', 'boto3', 'torch', 'imagesearch.local')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.strip() == ""
