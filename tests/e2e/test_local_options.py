"""Local mode's own options (issue 11): the banner's IMAGESEARCH_URL line, --host."""

from __future__ import annotations

from collections.abc import Callable

import requests

from tests.e2e.conftest import LocalProcess


def test_the_banner_prints_the_line_to_paste_for_the_cli(local_mode: LocalProcess) -> None:
    local_mode.wait_until(lambda: "Ctrl-C" in local_mode.log(), message="the banner")

    assert f"export IMAGESEARCH_URL={local_mode.url}\n" in local_mode.log()
    assert "no auth" in local_mode.log()
    assert "WARNING" not in local_mode.log()


def test_host_serves_beyond_loopback_with_a_warning(
    start_local_mode: Callable[..., LocalProcess],
) -> None:
    # Given local mode listening on every interface
    instance = start_local_mode("--host", "0.0.0.0")

    # Then it answers (here on loopback, which 0.0.0.0 includes), warns that there is
    # no auth, and tells the CLI the loopback URL
    assert requests.get(f"{instance.url}/health", timeout=30).json()["status"] == "ok"
    instance.wait_until(lambda: "Ctrl-C" in instance.log(), message="the banner")
    log = instance.log()
    assert "WARNING: listening on 0.0.0.0" in log
    assert "no auth" in log
    assert f"export IMAGESEARCH_URL=http://127.0.0.1:{instance.port}\n" in log
