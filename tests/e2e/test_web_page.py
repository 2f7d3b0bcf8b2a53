"""The web page at ``/`` in headless Chromium (Playwright, never a downloaded browser).

Needs Debian's chromium (``make browser`` installs it as root). Without it the
tests skip, except in CI (``CI=true``), where they fail: CI must run them.

Every test opens its own browser context (fresh history, storage and colour
scheme) on the module's shared local mode; tests that stop the server or need an
empty catalog start a private one. Assertions are on the DOM.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from PIL import Image

from fakes import imagefactory as images
from fakes.bedrock import FakeBedrock
from tests.e2e.conftest import LocalProcess, _new_instance

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
TIFF = "scans/quadrants.tiff"
BMP = "scans/quadrants.bmp"
BULK = 50  # with the others, more than one browse page (48)
SCORE = re.compile(r"^\d\.\d{3}$")
TIMEOUT_MS = 30_000
PageFactory = Callable[..., Any]
STATS_ROUTE = "**/local/stats"  # the page's counts, asked for first at start


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


@pytest.fixture(scope="module")
def bulk(indexed: LocalProcess) -> LocalProcess:
    """Given also a TIFF, a BMP and enough photos in ``bulk/`` for more than one page."""
    names = [TIFF, BMP]
    indexed.drop(TIFF, images.tiff(200, 150))
    indexed.drop(BMP, images.bmp(200, 150))
    for number in range(BULK):
        name = f"bulk/photo {number:03d} from the long weekend by the lake.jpg"
        photo = images.photo_image(96, 72, seed=number, noise=0)
        indexed.drop(name, images.encode(photo, "JPEG", quality=80))
        names.append(name)
    indexed.wait_indexed(*names)
    return indexed


@pytest.fixture
def new_page(browser: Any) -> Iterator[PageFactory]:
    """Factory: a page in a fresh context (``viewport``, ``color_scheme``...), opened at
    ``url``; fails the test on any JavaScript error."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(url: str, *, hold: list[Any] | None = None, **options: Any) -> Any:
        """``hold``: requests to /local/stats wait, appended there, until the test
        lets them go (``route.continue_()``)."""
        options.setdefault("viewport", {"width": 1200, "height": 800})
        context = browser.new_context(**options)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        if hold is not None:
            page.route(STATS_ROUTE, lambda route: hold.append(route))
        page.goto(url)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture
def page(new_page: PageFactory, indexed: LocalProcess) -> Any:
    return new_page(indexed.url + "/")


def _first_tile(page: Any) -> Any:
    return page.locator("#results .result").first


def _keys(page: Any) -> list[str]:
    keys: list[str] = page.locator("#results .result").evaluate_all(
        "tiles => tiles.map(t => t.dataset.key)"
    )
    return keys


def _search(page: Any, text: str) -> None:
    page.fill("#query", text)
    page.press("#query", "Enter")
    page.wait_for_function(
        "text => document.getElementById('status').textContent.includes('“' + text + '”')",
        arg=text,
    )


def _wait_for_held(page: Any, held: list[Any]) -> None:
    """Until the page's first /local/stats request is held (within 30 s). The page asks
    once /local/resources has answered, which may come after its load event; Playwright
    hands the route over while the page is waited on."""
    deadline = time.monotonic() + 30
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)


def _let_the_page_start(page: Any, held: list[Any]) -> None:
    """Let the held /local/stats requests go (see ``new_page``'s ``hold``) and wait
    until the page shows the count, which it does before its first query."""
    for route in held:
        route.continue_()
    page.unroute(STATS_ROUTE)
    page.wait_for_function(
        "() => /^[0-9]+$/.test(document.getElementById('stat-indexed').textContent)"
    )


def _query_params(page: Any) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query)


def _wait_status(page: Any, fragment: str) -> str:
    page.wait_for_function(
        "fragment => document.getElementById('status').textContent.includes(fragment)",
        arg=fragment,
    )
    text: str = page.inner_text("#status")
    return text


def _counts_agree(page: Any) -> bool:
    """Header and body tell the same story: the body's total is the header's count."""
    result: bool = page.evaluate(
        """() => {
            const indexed = document.getElementById('stat-indexed').textContent;
            const status = document.getElementById('status').textContent;
            const tiles = document.querySelectorAll('#results .result').length;
            if (!/^\\d+$/.test(indexed)) return false;
            const total = Number(indexed);
            if (total === 0) return tiles === 0 && status.startsWith('Nothing indexed yet');
            const all = status.match(/^All (\\d+) images?$/);
            if (all) return Number(all[1]) === total && tiles === total;
            const some = status.match(/^(\\d+) of (\\d+) images?$/);
            return Boolean(some) && Number(some[1]) === tiles && Number(some[2]) === total;
        }"""
    )
    return result


# --- Searching ------------------------------------------------------------------------


def test_text_search_shows_the_red_image_first(page: Any, indexed: LocalProcess) -> None:
    # When the user types "red" and presses Enter
    _search(page, "red")

    # Then the first tile is the red image, with its score
    page.wait_for_selector("#results .result[data-score]")
    first = _first_tile(page)
    assert first.get_attribute("data-key") == indexed.key_for(RED)
    assert SCORE.match(first.locator(".score").inner_text())
    assert "result" in page.inner_text("#status")
    # And the thumbnail (a presigned URL on the local moto server) loaded
    page.wait_for_function(
        "() => { const img = document.querySelector('#results .result img');"
        " return img && img.complete && img.naturalWidth > 0; }"
    )
    # And the query is in the URL
    assert _query_params(page)["q"] == ["red"]

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
    _search(page, "blue")
    page.wait_for_selector("#results .result[data-score]")
    first = _first_tile(page)
    assert first.get_attribute("data-key") == indexed.key_for(BLUE)

    # When the user asks for more like the blue image
    first.locator("button.more").click()

    # Then the page searches by that image: it is left out, other images are scored
    _wait_status(page, f"images like {BLUE}")
    keys = _keys(page)
    assert keys and indexed.key_for(BLUE) not in keys
    assert page.locator("#results .result[data-score]").count() == len(keys)
    # And the words are gone, the search is in the URL
    assert page.input_value("#query") == ""
    assert _query_params(page)["like"] == [indexed.image_id_for(BLUE)]


def test_search_by_a_picked_image_replaces_the_words(page: Any, indexed: LocalProcess) -> None:
    # Given a text search
    _search(page, "red")

    # When the user picks a green image file
    query = io.BytesIO(images.png(64, 48, images.GREEN))
    page.set_input_files(
        "#file", files=[{"name": "query.png", "mimeType": "image/png", "buffer": query.getvalue()}]
    )

    # Then the page searches by the image alone (the words are cleared, not combined)
    status = _wait_status(page, "query.png")
    assert "red" not in status
    assert page.input_value("#query") == ""
    assert _first_tile(page).get_attribute("data-key") == indexed.key_for(GREEN)
    assert page.locator("#query-image").is_visible()

    # When the user adds words, the combination is spelled out
    page.fill("#query", "blue")
    page.press("#query", "Enter")
    _wait_status(page, "query.png + “blue”")
    assert "combined with “blue”" in page.inner_text("#query-label")

    # And removing the image leaves the words
    page.click("#clear-image")
    page.wait_for_selector("#query-image", state="hidden")
    status = _wait_status(page, "for “blue”")
    assert "query.png" not in status


def test_paste_an_image_to_search_by_it(page: Any, indexed: LocalProcess) -> None:
    page.wait_for_selector("#results .result")
    # When the user pastes an image from the clipboard
    png = list(images.png(48, 48, images.GREEN))
    page.evaluate(
        """bytes => {
            const file = new File([new Uint8Array(bytes)], 'clip.png', {type: 'image/png'});
            const data = new DataTransfer();
            data.items.add(file);
            document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: data}));
        }""",
        png,
    )

    # Then the page searches by it
    _wait_status(page, "clip.png")
    assert _first_tile(page).get_attribute("data-key") == indexed.key_for(GREEN)
    assert page.locator("#query-preview").get_attribute("src", timeout=1000)


def test_filters_reach_the_api_and_the_results(page: Any, bulk: LocalProcess) -> None:
    # Folder, type and minimum score go into the search request
    page.select_option("#filter-type", "image/png")
    page.fill("#filter-folder", "greens/")
    page.fill("#filter-min", "0.1")
    page.fill("#query", "green")
    with page.expect_request(lambda request: request.url.endswith("/search")) as sent:
        page.press("#query", "Enter")
    body = json.loads(sent.value.post_data)
    assert body["prefix"] == "greens/"
    assert body["content_type"] == ["image/png"]
    assert body["min_score"] == 0.1
    _wait_status(page, "in greens/, PNG, score ≥ 0.1")
    assert _keys(page) == [bulk.key_for(GREEN)]
    assert all(float(score) >= 0.1 for score in page.locator(".result .score").all_inner_texts())
    params = _query_params(page)
    assert params["folder"] == ["greens/"] and params["type"] == ["image/png"]

    # And a type filter also narrows browsing (the list API has no type filter)
    page.keyboard.press("Escape")
    page.fill("#filter-folder", "")
    page.select_option("#filter-type", "image/tiff")
    _wait_status(page, "1 image (TIFF)")
    assert _keys(page) == [bulk.key_for(TIFF)]

    # And a minimum score no result reaches leaves an explained empty list
    page.select_option("#filter-type", "")
    page.fill("#filter-min", "0.999")
    _search(page, "red")
    _wait_status(page, "0 results")
    assert page.locator("#results .result").count() == 0


def test_the_query_is_in_the_url_back_works_and_links_restore_it(
    page: Any, new_page: PageFactory, indexed: LocalProcess
) -> None:
    _search(page, "red")
    page.wait_for_selector(f'#results .result[data-key="{indexed.key_for(RED)}"]')
    _search(page, "blue")
    assert _query_params(page)["q"] == ["blue"]

    # When the user goes back
    page.go_back()

    # Then the previous search is back, words and results
    _wait_status(page, "for “red”")
    assert page.input_value("#query") == "red"
    assert _first_tile(page).get_attribute("data-key") == indexed.key_for(RED)

    # And a shared link restores a search with its filters
    shared = new_page(f"{indexed.url}/?q=green&folder=greens%2F&min=0.05")
    _wait_status(shared, "for “green” (in greens/, score ≥ 0.05)")
    assert shared.input_value("#query") == "green"
    assert shared.input_value("#filter-folder") == "greens/"
    assert shared.input_value("#filter-min") == "0.05"
    assert _keys(shared) == [indexed.key_for(GREEN)]


# --- Browsing ------------------------------------------------------------------------------


def test_browse_counts_and_scrolls_through_everything(
    new_page: PageFactory, bulk: LocalProcess
) -> None:
    page = new_page(bulk.url + "/")
    # The first page, with the total as the header has it
    status = _wait_status(page, " of ")
    shown, total = (int(n) for n in re.findall(r"\d+", status)[:2])
    assert shown == page.locator("#results .result").count() == 48
    page.wait_for_function(
        f"() => document.getElementById('stat-indexed').textContent === '{total}'"
    )
    assert total >= BULK + 3

    # When the user scrolls to the end, every image is there, in key order
    for _ in range(10):
        if page.inner_text("#status").startswith("All"):
            break
        page.mouse.wheel(0, 20_000)
        page.wait_for_timeout(300)
    _wait_status(page, f"All {total} images")
    keys = _keys(page)
    assert len(keys) == len(set(keys)) == total
    assert keys == sorted(keys)
    assert page.locator("#more").is_hidden()
    # Thumbnails are lazy: far-away tiles have not loaded theirs
    assert page.locator("#results img[loading=lazy]").count() == total


def test_thousands_of_images_scroll_with_lazy_thumbnails(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    """5,000 images behind the list API (routed in the browser): pages are read as the
    user scrolls, never all at once, and each thumbnail is fetched at most once."""
    total = 5000
    thumbnails: list[str] = []
    pages: list[int] = []
    png = images.png(8, 8, images.BLUE)

    def stats(route: Any) -> None:
        payload = route.fetch().json()
        payload["images"] = {"indexed": total, "rejected": 0}
        route.fulfill(json=payload)

    def listing(route: Any) -> None:
        params = parse_qs(urlsplit(route.request.url).query)
        start = int(params.get("cursor", ["0"])[0])
        pages.append(start)
        end = min(total, start + int(params["limit"][0]))
        items = [
            {
                "image_id": f"{n:032x}",
                "key": f"uploads/many/{n:05d}.jpg",
                "status": "indexed",
                "content_type": "image/jpeg",
                "url": f"{indexed.url}/thumbs/{n}.png",
                "thumbnail_url": f"{indexed.url}/thumbs/{n}.png",
            }
            for n in range(start, end)
        ]
        route.fulfill(json={"items": items, "cursor": str(end) if end < total else None})

    def thumbnail(route: Any) -> None:
        thumbnails.append(route.request.url)
        route.fulfill(body=png, content_type="image/png")

    page = new_page("about:blank")
    page.route(STATS_ROUTE, stats)
    page.route(re.compile(r"/images\?status=indexed"), listing)
    page.route(re.compile(r"/thumbs/"), thumbnail)
    page.goto(indexed.url + "/")
    _wait_status(page, f"48 of {total} images")

    for _ in range(200):  # bounded: a page that stops loading fails below, not hangs
        if page.locator("#results .result").count() >= 480:
            break
        page.mouse.wheel(0, 30_000)
        page.wait_for_timeout(100)
    assert page.locator("#results .result").count() >= 480
    status = _wait_status(page, f" of {total} images")
    tiles = page.locator("#results .result").count()
    assert int(status.split()[0]) == tiles < total
    assert len(pages) == len(set(pages)) == tiles // 48  # one request per page, in order
    assert len(thumbnails) == len(set(thumbnails)) <= tiles
    assert page.locator("#results img[loading=lazy]").count() == tiles


def test_names_are_relative_to_the_upload_prefix_and_whole_on_hover(
    page: Any, indexed: LocalProcess
) -> None:
    page.goto(f"{indexed.url}/?folder=greens%2F")
    tile = page.locator(f'#results .result[data-key="{indexed.key_for(GREEN)}"]')
    name = tile.locator(".key")
    # The DOM's text: a tile not laid out yet (content-visibility: auto) has no innerText
    assert name.text_content() == GREEN
    assert name.get_attribute("title") == indexed.key_for(GREEN)


def test_live_counts_progress_and_results_while_ingesting_then_a_stopped_server(
    new_page: PageFactory, start_local_mode: Callable[..., LocalProcess], bedrock: FakeBedrock
) -> None:
    """One private local mode for the whole story (starting one is the slow part)."""
    # Given a fresh local mode: the page says there is nothing yet, and where to drop
    local = start_local_mode()
    page = new_page(local.url + "/")
    _wait_status(page, "Nothing indexed yet")
    assert str(local.dropbox) in page.inner_text("#status")
    assert _counts_agree(page)

    # When files arrive while the model is slow
    bedrock.latency_seconds = 3.0
    try:
        for number in range(3):
            local.drop(f"live/photo {number}.jpg", images.jpeg(64, 64, images.RED))
        # Then a progress bar shows the work to go
        page.wait_for_selector("#progress", state="visible")
        assert "to go" in page.inner_text("#progress-label")
    finally:
        bedrock.latency_seconds = 0.0

    # And the tiles appear without a reload; header and body agree
    page.wait_for_function("() => document.querySelectorAll('#results .result').length === 3")
    page.wait_for_selector("#progress", state="hidden")
    local.wait_until(lambda: _counts_agree(page), timeout=15, message="header and body to agree")
    assert page.inner_text("#stat-indexed") == "3"
    assert _wait_status(page, "All 3 images")
    assert page.locator("#results .result .key").first.inner_text() == "live/photo 0.jpg"

    # When local mode stops, the page says so in words, not "Failed to fetch"
    local.stop()
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "not answering" in error.inner_text()
    assert "imagesearch local" in error.inner_text()
    assert "Failed to fetch" not in page.inner_text("body")
    assert page.inner_text("#model") == "server not answering"

    # And a search says the same
    page.fill("#query", "red")
    page.press("#query", "Enter")
    page.wait_for_function("() => !document.getElementById('status').textContent.includes('…')")
    assert "not answering" in error.inner_text()
    assert page.locator("#results .result").count() == 0


def test_api_errors_are_shown_with_their_message(page: Any) -> None:
    # When the search fails (a query the API refuses: too long)
    page.fill("#query", "x" * 1500)
    page.press("#query", "Enter")

    # Then the API's message is shown, not a blank page
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "HTTP 422" in error.inner_text()
    assert "1000" in error.inner_text()  # the API's own words: at most 1000 characters


def test_a_search_asked_while_the_page_starts_runs_once(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    # Given a page still starting (its first count from the server has not come back)
    held: list[Any] = []
    page = new_page(indexed.url + "/", hold=held)
    searches: list[str] = []
    page.on(
        "request",
        lambda request: searches.append(request.url) if request.url.endswith("/search") else None,
    )
    page.wait_for_function("() => document.readyState === 'complete'")
    _wait_for_held(page, held)
    assert held, "the page asks for its counts first"

    # When a search is asked meanwhile, and the server refuses it
    page.fill("#query", "x" * 1500)
    page.press("#query", "Enter")
    error = page.locator("#error")
    error.wait_for(state="visible")
    assert "HTTP 422" in error.inner_text()

    # And the page then finishes starting
    _let_the_page_start(page, held)
    page.evaluate("() => new Promise((done) => setTimeout(done, 0))")

    # Then the search was not asked again, and its error stays
    assert len(searches) == 1
    assert "HTTP 422" in error.inner_text()


def test_failed_files_are_shown_with_their_cause(page: Any, indexed: LocalProcess) -> None:
    # Given an API that lists failed files (local mode's model probe marks them so)
    key = indexed.key_for("broken model/photo.jpg")
    cause = "Bedrock is not reachable: could not connect to the endpoint URL"

    def stats(route: Any) -> None:
        payload = route.fetch().json()
        payload["images"]["failed"] = 1
        route.fulfill(json=payload)

    page.route(STATS_ROUTE, stats)
    page.route(
        re.compile(r"/images\?status=failed"),
        lambda route: route.fulfill(
            json={
                "items": [
                    {
                        "image_id": "f" * 32,
                        "key": key,
                        "status": "failed",
                        "reason": cause,
                        "url": "http://127.0.0.1:1/x",
                    }
                ],
                "cursor": None,
            }
        ),
    )

    # Then the header counts it, and the list shows the cause
    button = page.locator("#stat-failed-button")
    button.wait_for(state="visible")
    assert page.inner_text("#stat-failed") == "1"
    button.click()
    entry = page.locator(f'#problems-list li[data-key="{key}"]')
    entry.wait_for()
    assert entry.locator(".reason").inner_text() == cause
    assert entry.locator("code").inner_text() == "broken model/photo.jpg"
    assert button.get_attribute("aria-expanded") == "true"


def test_a_banner_shows_why_the_model_is_unusable_and_the_fix(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    # Given local mode whose start-up check found no AWS credentials
    broken = {
        "ok": False,
        "what": "AWS credentials",
        "detail": "none found (no AWS_PROFILE, environment variables or ~/.aws files)",
        "fix": "set AWS_PROFILE or run aws configure; or run without AWS: --embedder clip",
    }
    healthy: list[bool] = []

    assert indexed.get("/local/stats").json()["model"] == {"ok": True}  # the real one

    def stats(route: Any) -> None:
        payload = route.fetch().json()
        if not healthy:
            payload["model"] = broken
        route.fulfill(json=payload)

    page = new_page(indexed.url + "/")
    page.route(STATS_ROUTE, stats)  # from the page's next poll of its counts

    # Then a banner says what is wrong and the fix
    banner = page.locator("#model-problem")
    banner.wait_for(state="visible")
    assert banner.get_attribute("role") == "alert"
    assert page.inner_text("#model-problem-cause") == f"AWS credentials: {broken['detail']}"
    assert page.inner_text("#model-problem-fix") == broken["fix"]

    # And it goes once the model answers (the page polls its counts)
    healthy.append(True)
    banner.wait_for(state="hidden")


def test_no_banner_while_the_model_works(page: Any) -> None:
    page.wait_for_function(
        "() => /^[0-9]+$/.test(document.getElementById('stat-indexed').textContent)"
    )
    assert page.locator("#model-problem").is_hidden()


def test_rejected_files_are_listed_with_their_reason(page: Any, indexed: LocalProcess) -> None:
    indexed.drop("not an image.jpg", b"this is text, not a JPEG")
    indexed.wait_status("not an image.jpg", "rejected")
    page.wait_for_function("() => Number(document.getElementById('stat-rejected').textContent) > 0")
    page.click("#stat-rejected-button")
    entry = page.locator(f'#problems-list li[data-key="{indexed.key_for("not an image.jpg")}"]')
    entry.wait_for()
    assert entry.locator(".reason").inner_text()


def test_files_the_bucket_refused_are_listed_with_their_reason(
    page: Any, indexed: LocalProcess
) -> None:
    # Given a file whose name no S3 key may hold (a control character)
    indexed.drop("bad\nname.jpg", images.jpeg(16, 16, images.RED))

    # Then the header counts it, and the list names it (escaped) with the reason
    button = page.locator("#stat-refused-button")
    button.wait_for(state="visible")
    button.click()
    entry = page.locator("#problems-list li", has_text="bad\\nname.jpg")
    entry.wait_for()
    assert "control character" in entry.locator(".reason").inner_text()
    assert page.inner_text("#problems-title").endswith("not uploaded")


# --- The detail view ---------------------------------------------------------------------


def test_detail_view_shows_the_image_metadata_and_score(page: Any, indexed: LocalProcess) -> None:
    _search(page, "red")
    tile = page.locator(f'#results .result[data-key="{indexed.key_for(RED)}"]')
    score = tile.locator(".score").inner_text()

    # When the user opens a result
    tile.locator("a.open").click()

    # Then the dialog shows the original, its metadata and score; the URL names it
    dialog = page.locator("#detail")
    dialog.wait_for(state="visible")
    page.wait_for_function(
        "() => { const img = document.getElementById('detail-image');"
        " return img.dataset.source === 'original' && img.complete && img.naturalWidth === 120; }"
    )
    page.wait_for_selector('#detail-meta dd[data-field="indexed"]')
    assert page.inner_text("#detail-title") == RED
    assert page.inner_text('#detail-meta dd[data-field="score"]') == score
    assert page.inner_text('#detail-meta dd[data-field="key"]') == indexed.key_for(RED)
    assert (
        page.inner_text('#detail-meta dd[data-field="dimensions"]')
        == "120 \N{MULTIPLICATION SIGN} 90"
    )
    assert _query_params(page)["id"] == [indexed.image_id_for(RED)]

    # And the original downloads (saved, not opened)
    with page.expect_download() as download:
        page.click("#detail-download")
    assert download.value.suggested_filename == RED

    # When the user presses Esc, the dialog closes and the URL forgets it
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    page.wait_for_function("() => !location.search.includes('id=')")
    assert page.input_value("#query") == "red"  # the search stays


@pytest.mark.parametrize("name", [TIFF, BMP])
def test_detail_view_previews_formats_browsers_cannot_show(
    new_page: PageFactory, bulk: LocalProcess, name: str
) -> None:
    # A shared link to the image opens its detail view
    page = new_page(f"{bulk.url}/?id={bulk.image_id_for(name)}")
    page.locator("#detail").wait_for(state="visible")
    page.wait_for_function(
        "() => { const img = document.getElementById('detail-image');"
        " return img.dataset.source === 'thumbnail' && img.complete && img.naturalWidth > 0; }"
    )
    assert "Preview" in page.inner_text("#detail-note")
    assert page.inner_text("#detail-title") == name


def test_more_like_this_and_delete_from_the_detail_view(page: Any, indexed: LocalProcess) -> None:
    name = "to delete/purple.png"
    indexed.drop(name, images.png(40, 40, (128, 0, 128)))
    indexed.wait_indexed(name)
    page.goto(f"{indexed.url}/?folder=to+delete%2F")
    tile = page.locator(f'#results .result[data-key="{indexed.key_for(name)}"]')
    tile.locator("a.open").click()
    page.locator("#detail").wait_for(state="visible")

    # "More like this" searches by it and closes the dialog
    page.click("#detail-more")
    _wait_status(page, f"images like {name}")
    assert page.locator("#detail").is_hidden()

    # Delete asks first, then removes it from the page and the catalog
    page.goto(f"{indexed.url}/?id={indexed.image_id_for(name)}")
    page.wait_for_selector('#detail-meta dd[data-field="key"]')
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#detail-delete")
    page.locator("#detail").wait_for(state="hidden")
    _wait_status(page, f"Deleted {name}")
    indexed.wait_gone(name)


def test_a_search_asked_while_the_page_starts_still_offers_an_update(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    # Given a search answered before the page's first count came back
    held: list[Any] = []
    page = new_page(indexed.url + "/", hold=held)
    page.wait_for_function("() => document.readyState === 'complete'")
    _search(page, "yellow")
    page.wait_for_selector("#results .result[data-score]")
    _let_the_page_start(page, held)

    # When an image is indexed afterwards, then the results offer an update
    # (not yellow: another test searches for its own yellow image and wants it first)
    name = "late/after an early search.png"
    indexed.drop(name, images.png(30, 60, (20, 90, 160)))
    indexed.wait_indexed(name)
    stale = page.locator("#stale")
    stale.wait_for(state="visible")
    assert "new image" in stale.inner_text()


def test_a_deletion_made_while_the_page_starts_is_still_said(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    # Given a shared link to one image, opened while the page's first count is held
    name = "shared link/orange.png"
    indexed.drop(name, images.png(40, 40, (250, 140, 0)))
    indexed.wait_indexed(name)
    held: list[Any] = []
    page = new_page(f"{indexed.url}/?id={indexed.image_id_for(name)}", hold=held)
    page.wait_for_selector('#detail-meta dd[data-field="key"]')
    _wait_for_held(page, held)
    assert held, "the page is still starting"

    # When it is deleted from the detail view before the page has finished starting
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#detail-delete")
    page.locator("#detail").wait_for(state="hidden")
    _wait_status(page, f"Deleted {name}")
    _let_the_page_start(page, held)

    # Then the page's first list (no tile before it) still says so, without the image
    page.wait_for_selector("#results .result")
    assert f"Deleted {name}" in page.inner_text("#status")
    assert page.locator(f'#results .result[data-key="{indexed.key_for(name)}"]').count() == 0
    indexed.wait_gone(name)


@pytest.fixture(scope="module")
def scale_tier(
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Iterator[LocalProcess]:
    """Local mode on the scale tier (S3 Vectors emulator), with red and blue indexed."""
    instance = _new_instance(
        tmp_path_factory,
        imagesearch_command,
        {**local_env, "VECTOR_STORE": "s3vectors"},
        "page-s3vectors",
    )
    instance.start()
    try:
        instance.drop(RED, images.jpeg(120, 90, images.RED))
        instance.drop(BLUE, images.jpeg(100, 100, images.BLUE))
        keys = {record["key"] for record in instance.wait_indexed(RED, BLUE)}
        instance.wait_until(
            lambda: keys <= {hit["key"] for hit in instance.search(text="image", top_k=100)},
            message="the images to be searchable",
        )
        yield instance
    finally:
        instance.stop()


def test_search_and_delete_on_the_scale_tier(
    new_page: PageFactory, scale_tier: LocalProcess
) -> None:
    assert scale_tier.get("/local/resources").json()["vector_store"] == "s3vectors"
    page = new_page(scale_tier.url + "/")

    # Searching by text ranks the red image first, from the S3 Vectors index
    _search(page, "red")
    page.wait_for_selector("#results .result[data-score]")
    assert _first_tile(page).get_attribute("data-key") == scale_tier.key_for(RED)
    assert SCORE.match(_first_tile(page).locator(".score").inner_text())

    # More like the blue image leaves the blue image out
    page.goto(f"{scale_tier.url}/?like={scale_tier.image_id_for(BLUE)}")
    _wait_status(page, f"images like {BLUE}")
    assert _keys(page) == [scale_tier.key_for(RED)]

    # Deleting the red image from its detail view removes it from the results
    page.goto(f"{scale_tier.url}/?id={scale_tier.image_id_for(RED)}")
    page.wait_for_selector('#detail-meta dd[data-field="key"]')
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#detail-delete")
    page.locator("#detail").wait_for(state="hidden")
    _wait_status(page, f"Deleted {RED}")
    scale_tier.wait_gone(RED)
    scale_tier.wait_until(
        lambda: scale_tier.key_for(RED) not in [h["key"] for h in scale_tier.search(text="red")],
        message="the red image to leave the index",
    )
    _search(page, "red")
    page.wait_for_selector("#results .result[data-score]")
    assert _keys(page) == [scale_tier.key_for(BLUE)]


# --- Keyboard, layout, colours, labels -----------------------------------------------------


def test_slash_focuses_search_and_escape_clears(page: Any, indexed: LocalProcess) -> None:
    page.wait_for_selector("#results .result")
    page.click("#keys")  # focus away from the search box
    assert page.evaluate("document.activeElement.id") != "query"

    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "query"
    assert page.input_value("#query") == ""  # the slash is not typed

    page.keyboard.type("red")
    page.keyboard.press("Enter")
    _wait_status(page, "for “red”")

    page.keyboard.press("Escape")
    page.wait_for_function("() => !document.getElementById('status').textContent.includes('red')")
    assert page.input_value("#query") == ""
    assert "q" not in _query_params(page)
    assert page.locator("#results .result[data-score]").count() == 0  # browsing again


def test_results_open_and_close_from_the_keyboard(page: Any, indexed: LocalProcess) -> None:
    _search(page, "red")
    link = page.locator(f'#results .result[data-key="{indexed.key_for(RED)}"] a.open')
    link.focus()
    page.keyboard.press("Enter")
    page.locator("#detail").wait_for(state="visible")
    assert page.evaluate("document.getElementById('detail').contains(document.activeElement)")

    page.keyboard.press("Escape")
    page.locator("#detail").wait_for(state="hidden")
    # Focus goes back to the result the user came from
    assert page.evaluate("document.activeElement.closest('.result')?.dataset.key") == (
        indexed.key_for(RED)
    )
    # And the back button closes a detail view opened by mouse, keeping the search
    link.click()
    page.locator("#detail").wait_for(state="visible")
    page.go_back()
    page.locator("#detail").wait_for(state="hidden")
    assert _query_params(page)["q"] == ["red"]


def test_search_results_offer_an_update_when_new_images_arrive(
    page: Any, indexed: LocalProcess
) -> None:
    # Given a page that knows its count (a count that first arrives after the late image
    # was indexed would be taken as what the search saw: no update to offer)
    page.wait_for_function(
        "() => /^[0-9]+$/.test(document.getElementById('stat-indexed').textContent)"
    )
    _search(page, "yellow")
    page.wait_for_selector("#results .result[data-score]")
    assert page.locator("#stale").is_hidden()

    # When a matching image is indexed after the search
    name = "late/yellow.png"
    indexed.drop(name, images.png(50, 50, images.YELLOW))
    indexed.wait_indexed(name)

    # Then the results stay put but offer an update, which brings it in
    stale = page.locator("#stale")
    stale.wait_for(state="visible")
    assert "new image" in stale.inner_text()
    assert indexed.key_for(name) not in _keys(page)
    stale.click()
    page.wait_for_function(
        "key => document.querySelector('#results .result').dataset.key === key",
        arg=indexed.key_for(name),
    )
    assert stale.is_hidden()


def test_dark_mode_follows_the_system_setting(new_page: PageFactory, indexed: LocalProcess) -> None:
    def background(scheme: str) -> tuple[int, ...]:
        page = new_page(indexed.url + "/", color_scheme=scheme)
        colour: str = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
        return tuple(int(n) for n in re.findall(r"\d+", colour)[:3])

    assert sum(background("dark")) < 3 * 60
    assert sum(background("light")) > 3 * 200


def test_two_to_three_columns_on_a_phone(new_page: PageFactory, bulk: LocalProcess) -> None:
    page = new_page(bulk.url + "/", viewport={"width": 375, "height": 740})
    page.wait_for_function("() => document.querySelectorAll('#results .result').length >= 6")
    columns = page.locator("#results .result").evaluate_all(
        "tiles => new Set(tiles.map(t => Math.round(t.getBoundingClientRect().left))).size"
    )
    assert 2 <= columns <= 3
    assert page.evaluate("document.documentElement.scrollWidth") <= 375  # no sideways scroll
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web-page-375.png"))


def test_every_control_has_a_label(page: Any) -> None:
    unlabelled = page.evaluate(
        """() => [...document.querySelectorAll('input, select, button, a[href]')]
            .filter(el => !el.closest('template') && !el.closest('[hidden]'))
            .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label')
                          && !el.textContent.trim())
            .map(el => el.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []


class _OtherSite:
    """A web page on another loopback port (any site the user visits can do the same)."""

    def __init__(self) -> None:
        body = b"<!doctype html><title>another site</title><p>hello</p>"

        class Page(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> _OtherSite:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


# Each attempt: a CORS fetch whose answer the page tries to read ("blocked" when the
# browser refuses), or a no-cors write it fires blind.
_ATTACK = """async (attempts) => {
  const outcomes = [];
  for (const [method, url, mode] of attempts) {
    try {
      const response = await fetch(url, { method, mode });
      const text = mode === "no-cors" ? "" : await response.text();
      outcomes.push(mode === "no-cors" ? "sent" : `read ${response.status} ${text}`);
    } catch (error) {
      outcomes.push("blocked");
    }
  }
  return outcomes;
}"""


def test_a_page_of_another_origin_can_neither_read_nor_change_moto(
    new_page: PageFactory, indexed: LocalProcess
) -> None:
    # Given moto's endpoint (a hostile page would have to find the port; give it the
    # whole endpoint, secret path included, and the bucket and key as well)
    resources = indexed.get("/local/resources").json()
    endpoint, bucket = resources["endpoint_url"], resources["bucket"]
    parts = urlsplit(endpoint)
    port_root = f"{parts.scheme}://{parts.netloc}"
    key = indexed.key_for(RED).replace(" ", "%20")
    reads = [
        ["GET", f"{port_root}/{bucket}?list-type=2", "cors"],
        ["GET", f"{port_root}/{bucket}/{key}", "cors"],
        ["GET", f"{port_root}/moto-api/data.json", "cors"],
        ["GET", f"{endpoint}/{bucket}?list-type=2", "cors"],
        ["GET", f"{endpoint}/{bucket}/{key}", "cors"],
        ["DELETE", f"{endpoint}/{bucket}/{key}", "cors"],
        ["DELETE", f"{port_root}/{bucket}/{key}", "cors"],
    ]
    writes = [
        ["POST", f"{port_root}/moto-api/reset", "no-cors"],
        ["POST", f"{endpoint}/moto-api/reset", "no-cors"],
        ["POST", f"{port_root}/?Action=PurgeQueue&QueueUrl={resources['queue_url']}", "no-cors"],
    ]

    with _OtherSite() as site:
        page = new_page(site.url)
        outcomes = page.evaluate(_ATTACK, reads + writes)

    # Then the page read nothing, and everything is still there
    assert outcomes == ["blocked"] * len(reads) + ["sent"] * len(writes)
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=resources["region"])
    assert s3.head_object(Bucket=bucket, Key=indexed.key_for(RED))["ContentLength"] > 0
    assert indexed.record(RED) is not None
    assert indexed.key_for(RED) in {hit["key"] for hit in indexed.search(text="red", top_k=10)}
