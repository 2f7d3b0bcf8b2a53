"""The web page at ``/`` in headless Chromium (Playwright, never a downloaded browser).

Needs Debian's chromium (``make browser`` installs it as root). Without it the
tests skip, except in CI (``CI=true``), where they fail: CI must run them.
"""

from __future__ import annotations

import io
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests import imagefactory as images
from tests.e2e.conftest import LocalProcess

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RED = "red ball.jpg"
GREEN = "greens/green leaf.png"
BLUE = "blue sea.jpg"
SCORE = re.compile(r"^\d\.\d{3}$")
TIMEOUT_MS = 30_000


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    reason = "chromium is not installed (run `make browser` as root, or apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason}: CI must run the browser test")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def indexed(local_mode: LocalProcess) -> LocalProcess:
    """Given red, green and blue images, indexed and searchable."""
    local_mode.drop(RED, images.jpeg(120, 90, images.RED))
    local_mode.drop(GREEN, images.png(90, 120, images.GREEN))
    local_mode.drop(BLUE, images.jpeg(100, 100, images.BLUE))
    keys = {record["key"] for record in local_mode.wait_indexed(RED, GREEN, BLUE)}
    local_mode.wait_until(
        lambda: keys <= {hit["key"] for hit in local_mode.search(text="image", top_k=100)},
        message="the images to be searchable",
    )
    return local_mode


@pytest.fixture
def page(browser: Any, indexed: LocalProcess) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(indexed.url + "/")
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _first_tile(page: Any) -> Any:
    return page.locator("#results .result").first


def test_text_search_shows_the_red_image_first(page: Any, indexed: LocalProcess) -> None:
    # When the user types "red" and presses Enter
    page.fill("#query", "red")
    page.press("#query", "Enter")

    # Then the first tile is the red image, with its score
    page.wait_for_selector("#results .result[data-score]")
    first = _first_tile(page)
    assert first.get_attribute("data-key") == indexed.key_for(RED)
    assert SCORE.match(first.locator(".score").inner_text())
    assert "result" in page.locator("#status").inner_text()
    # And the thumbnail (a presigned URL on the local moto server) loaded
    page.wait_for_function(
        "() => { const img = document.querySelector('#results .result img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )

    # And the ingest counts are shown
    page.wait_for_function(
        "() => /^\\d+$/.test(document.getElementById('stat-indexed').textContent)"
    )
    assert int(page.inner_text("#stat-indexed")) >= 3

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "web-page-text-search.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    with Image.open(shot) as image:
        assert image.size[0] >= 1200
        colours = image.convert("RGB").getcolors(maxcolors=1_000_000) or []
        assert len(colours) > 50  # text, thumbnails and borders, not a blank page


def test_more_like_this(page: Any, indexed: LocalProcess) -> None:
    page.fill("#query", "blue")
    page.press("#query", "Enter")
    page.wait_for_selector("#results .result[data-score]")
    first = _first_tile(page)
    assert first.get_attribute("data-key") == indexed.key_for(BLUE)

    # When the user asks for more like the blue image
    first.locator("button.more").click()

    # Then the page searches by that image: it is left out, other images are scored
    page.wait_for_function(
        "key => document.getElementById('status').textContent.includes('images like ' + key)",
        arg=indexed.key_for(BLUE),
    )
    keys = page.locator("#results .result").evaluate_all("tiles => tiles.map(t => t.dataset.key)")
    assert keys and indexed.key_for(BLUE) not in keys
    assert page.locator("#results .result[data-score]").count() == len(keys)


def test_search_by_a_picked_image(page: Any, indexed: LocalProcess) -> None:
    # When the user picks a green image file
    query = io.BytesIO(images.png(64, 48, images.GREEN))
    page.set_input_files(
        "#file", files=[{"name": "query.png", "mimeType": "image/png", "buffer": query.getvalue()}]
    )

    # Then the page searches by it and the green image comes first
    page.wait_for_function(
        "() => document.getElementById('status').textContent.includes('query.png')"
    )
    assert _first_tile(page).get_attribute("data-key") == indexed.key_for(GREEN)
    assert page.locator("#query-image").is_visible()


def test_errors_are_shown_as_text(page: Any) -> None:
    # When the search fails (a query the API refuses: too long)
    page.fill("#query", "x" * 1500)
    page.press("#query", "Enter")

    # Then the API's message is shown, not a blank page
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "HTTP 422" in error.inner_text()
