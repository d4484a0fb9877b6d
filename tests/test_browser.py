"""The search page in a real headless Chromium, against `spyglass serve`."""

from __future__ import annotations

import base64
import os
import re
import shutil
import time
from pathlib import Path

import pytest

# Playwright's expect polls from the driver: wait_for_function would evaluate strings in the
# page, which its Content-Security-Policy (no eval) rightly refuses.
expect = pytest.importorskip("playwright.sync_api").expect

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = os.environ.get("SPYGLASS_TEST_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # The page must work under its own Content-Security-Policy: Chromium reports each violation.
    page.on("console", lambda message: "Content Security Policy" in message.text and errors.append(message.text))
    yield page
    context.close()
    assert errors == [], f"JavaScript errors: {errors}"


def result_names(page) -> list[str]:
    return page.locator("#results .name").all_inner_texts()


def test_search_drop_and_more_like_this(page, live_server):
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(live_server["url"])
    expect(page.locator("#message")).to_contain_text("indexed")

    page.fill("#q", "a red bicycle")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li img")
    assert "q=a+red+bicycle" in page.url
    # Every indexed image, the duplicate red folded into red.jpg's tile.
    assert len(result_names(page)) == 8
    expect(page.locator("#results .copies")).to_have_text("+1")
    for img in page.locator("#results img").all():
        expect(img).to_have_js_property("complete", True)
        assert img.evaluate("(img) => img.naturalWidth") > 0
    page.screenshot(path=str(ARTIFACTS / "search-results.png"), full_page=True)

    red = (live_server["media"] / "red.jpg").read_bytes()
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "query.jpg", { type: "image/jpeg" }));
        document.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true }));
    }""", base64.b64encode(red).decode())
    expect(page.locator("#query-image")).to_be_visible()
    expect(page.locator("#results .score").first).to_have_text("1.000")
    assert result_names(page)[0] in ("red.jpg", "red copy.jpg")
    page.screenshot(path=str(ARTIFACTS / "search-by-dropped-image.png"), full_page=True)

    page.click("#results li:nth-child(3) a")
    page.wait_for_selector("#viewer[open]")
    clicked = page.locator("#viewer-caption").inner_text().split(" · ")[0]
    page.click("#more-like-this")
    page.wait_for_url("**like=*")
    expect(page.locator("#results .score").first).to_have_text("1.000")
    assert page.locator("#results a").first.get_attribute("title").split("\n")[0] == clicked

    page.go_back()  # to the dropped-image search, which the URL cannot carry
    expect(page).to_have_url(live_server["url"] + "/")
    page.go_back()
    expect(page).to_have_url(live_server["url"] + "/?q=a+red+bicycle")
    expect(page.locator("#results li")).to_have_count(8)
    assert page.input_value("#q") == "a red bicycle"


def test_file_picker_keyboard_and_paging(page, live_server):
    page.goto(live_server["url"] + "/?q=anything")
    page.wait_for_selector("#results li")
    page.set_input_files("#file", str(live_server["media"] / "photo.TIFF"))
    expect(page.locator("#results .name").first).to_have_text("photo.TIFF")

    page.locator("#results a").first.focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[open]")
    page.keyboard.press("Escape")
    expect(page.locator("#viewer")).not_to_have_attribute("open", "")

    # 30 per page and 9 items: one page, no "more" button.
    assert page.locator("#more").is_hidden()


def test_errors_and_phone_width(page, live_server):
    page.goto(live_server["url"] + "/?like=99999")
    page.wait_for_selector("#message.error")
    assert "99999" in page.inner_text("#message")

    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(live_server["url"] + "/?q=phone")
    page.wait_for_selector("#results li img")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.evaluate("Promise.all([...document.querySelectorAll('#results img')].map((img) => "
                  "{ img.loading = 'eager'; return img.decode().catch(() => null); }))")
    page.screenshot(path=str(ARTIFACTS / "phone-width.png"), full_page=True)


def test_label_chips_narrow_the_search(page, live_server):
    page.goto(live_server["url"] + "/?q=anything")
    page.wait_for_selector("#results li .labels a")
    chip = page.locator("#results li .labels a").first
    label = chip.inner_text()
    chip.click()
    page.wait_for_url(f"**label={label}*")
    expect(page.locator("#filter")).to_be_visible()
    expect(page.locator("#filter strong")).to_have_text(label)
    page.wait_for_selector("#results li")
    firsts = page.locator("#results li .labels a:first-child").all_inner_texts()
    assert firsts and set(firsts) == {label}  # every result's best label is the chosen one
    page.click("#filter a")  # show all again
    expect(page.locator("#filter")).to_be_hidden()
    expect(page.locator("#results li")).to_have_count(8)


@pytest.fixture(scope="module")
def video_server(tmp_path_factory, tiny_model, encoder):
    """`spyglass serve` over a WebM film with cuts (VP9: every Chromium build plays it) and one image."""
    pytest.importorskip("av")
    from conftest import MEDIA, Settings, free_port, serving
    from make_videos import write_video
    from spyglass.indexer.job import run_index

    base = tmp_path_factory.mktemp("served-video")
    media = base / "media"
    media.mkdir()
    shutil.copy(MEDIA / "red.jpg", media / "red.jpg")
    write_video(media / "film.webm", [(3, "solid", (200, 0, 0)), (4, "texture", (0, 0, 200)),
                                      (5, "texture", (0, 200, 0)), (4, "solid", (240, 240, 0))])
    settings = Settings(runtime="torch", vector_storage="float32", home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", port=free_port(), page_cutoff=0)
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    with serving(settings, base / "server.log") as url:
        yield url


def test_a_video_result_plays_from_its_moment(page, video_server):
    import json
    import urllib.request

    with urllib.request.urlopen(f"{video_server}/api/v1/search?q=a+green+texture&kind=video&k=1") as answer:
        hit = json.load(answer)["results"][0]
    page.goto(video_server + "/?q=a+green+texture")
    grid_video = page.locator("#results li video")
    expect(grid_video).to_have_count(1)
    assert grid_video.get_attribute("preload") == "none"  # the grid fetches posters, not videos
    moment = page.locator("#results .moment")
    expect(moment).to_have_text(re.compile(r"\d\d:\d\d–\d\d:\d\d"))
    grid_video.click()
    player = page.locator("#viewer-video")
    expect(player).to_be_visible()
    expect(page.locator("#viewer-caption")).to_contain_text(moment.inner_text())
    # It plays, from the segment's start: never from 0 when the moment starts later.
    deadline = time.monotonic() + 20
    state = {}
    while time.monotonic() < deadline:
        state = player.evaluate("v => ({t: v.currentTime, paused: v.paused, ready: v.readyState, error: v.error && v.error.code})")
        if state["ready"] >= 2 and not state["paused"] and state["t"] > hit["start_s"]:
            break
        time.sleep(0.2)
    assert state.get("error") is None, state
    assert not state["paused"] and hit["start_s"] <= state["t"] <= hit["end_s"] + 0.5, (state, hit)
    page.keyboard.press("Escape")
    # The dialog's close event is queued as a task of its own: wait for it to pause the video.
    page.wait_for_function("() => document.getElementById('viewer-video').paused", timeout=5000)
    assert player.evaluate("v => v.paused")


def test_words_mode_shows_why_a_result_matched(page, live_server):
    page.goto(live_server["url"])
    page.fill("#q", "red")
    page.select_option("#mode", "words")
    page.keyboard.press("Enter")
    page.wait_for_selector("#results li .match mark")
    assert "mode=words" in page.url
    # Only the names that say it, each with its name marked, escaped and shown as text; the copy,
    # the same bytes, folded into the first.
    assert result_names(page) == ["red.jpg"] and page.inner_text("#results .copies") == "+1"
    expect(page.locator("#results .match mark").first).to_have_text("red")
    page.screenshot(path=str(ARTIFACTS / "search-words.png"), full_page=True)
    page.go_back()
    page.goto(live_server["url"] + "/?q=red&mode=words")
    expect(page.locator("#mode")).to_have_value("words")


def test_login_search_csrf_refusal_and_logout(page, accounts_server):
    from conftest import ACCOUNT_PASSWORD

    url = accounts_server["url"]
    page.goto(url + "/?q=red")
    assert "/login" in page.url  # sent to log in first
    page.fill("#name", "alice")
    page.fill("#password", "not the password")
    page.click("button[type=submit]")
    assert "Wrong name or password" in page.inner_text("#login-message")
    page.fill("#password", ACCOUNT_PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("#results li")
    assert page.url.endswith("/?q=red") and page.inner_text("#user-name") == "alice"
    paths = page.evaluate("fetch('/api/v1/search?q=red&k=50').then(r => r.json()).then(d => d.results.map(h => h.path))")
    assert paths and all(path.startswith("nested/") for path in paths)  # the session sees alice's folder only
    # A POST from this page without its CSRF token is refused; with it, answered.
    statuses = page.evaluate("""async () => {
        const bare = await fetch('/api/v1/search', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                                   body: JSON.stringify({text: 'red'})});
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const signed = await fetch('/api/v1/search', {method: 'POST', body: JSON.stringify({text: 'red'}),
                                   headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}});
        return [bare.status, signed.status];
    }""")
    assert statuses == [403, 200]
    page.click("#logout")
    page.wait_for_url("**/login")
    assert page.evaluate("fetch('/api/v1/status').then(r => r.status)") == 401

