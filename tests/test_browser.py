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
    settings = Settings(home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
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


PHONE, DESKTOP = {"width": 390, "height": 844}, {"width": 1280, "height": 800}
LONG_NAME = "IMG_20230714_183000_a_very_long_file_name_that_a_phone_or_a_messenger_app_would_give_it.jpg"


@pytest.fixture(scope="module")
def photo_server(tmp_path_factory, tiny_model, encoder):
    """`spyglass serve` over a phone's photos, made here with EXIF dates, cameras and GPS."""
    from conftest import Settings, free_port, serving
    from spyglass.indexer.job import run_index
    from test_photo_facts import EIFFEL, SHIBUYA, photo

    base = tmp_path_factory.mktemp("served-photos")
    media = base / "phone"
    media.mkdir()
    colours = [(200, 40, 40), (30, 120, 220), (90, 200, 60), (240, 200, 20), (120, 40, 160), (20, 20, 20),
               (250, 250, 250), (40, 160, 160), (200, 100, 0), (100, 100, 100)]
    for number, colour in enumerate(colours):
        july = number % 2 == 0
        photo(media / (LONG_NAME if number == 0 else f"IMG_{number:04d}.{'HEIC' if number == 3 else 'jpg'}"),
              colour, size=(120, 90), taken=f"{2023 if july else 2019}:0{7 if july else 8}:{10 + number} 12:00:00",
              make="Apple" if july else "Canon", model="iPhone 15" if july else "Canon EOS R5",
              position=EIFFEL if july else SHIBUYA)
    shutil.copy(media / "IMG_0002.jpg", media / "IMG_0002 (1).jpg")  # a re-saved copy
    settings = Settings(home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
                        device="cpu", port=free_port(), page_cutoff=0,
                        # The tests' random model finds every flat-coloured photo alike: only copies fold.
                        duplicate_cosine=0.9999)
    run_index(settings, [str(media)], encoder=encoder, progress=False)
    with serving(settings, base / "server.log") as url:
        yield url


def no_overflow(page, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert page.evaluate("document.body.scrollWidth") <= width


@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_no_overflow_even_tiles_and_a_viewer_that_fits(browser, photo_server, size):
    ARTIFACTS.mkdir(exist_ok=True)
    context = browser.new_context(viewport=size)
    page = context.new_page()
    try:
        page.goto(photo_server + "/?q=a+photo&mode=visual")
        expect(page.locator("#results li")).to_have_count(10)  # 11 files, the copy folded
        page.evaluate("Promise.all([...document.querySelectorAll('#results img')].map((img) => "
                      "{ img.loading = 'eager'; return img.decode().catch(() => null); }))")
        no_overflow(page, size["width"])
        heights = {round(box["height"]) for box in
                   (tile.bounding_box() for tile in page.locator("#results > li").all())}
        assert len(heights) == 1, heights  # one height, the long name and the labels notwithstanding
        expect(page.locator("#message")).to_have_text(re.compile(r"^11 photos \(1 near-duplicate folded\)"))
        name = page.locator("#results .name", has_text="very_long").first
        assert name.evaluate("(el) => el.scrollWidth > el.clientWidth")  # cut short with an ellipsis
        page.screenshot(path=str(ARTIFACTS / f"photos-{size['width']}.png"), full_page=True)
        page.locator("#results li a").first.click()
        page.wait_for_selector("#viewer[open]")
        expect(page.locator("#viewer-image")).to_have_js_property("complete", True)
        assert "size=preview" in page.locator("#viewer-image").get_attribute("src")
        box = page.locator("#viewer").bounding_box()
        assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= size["width"]
        assert box["y"] + box["height"] <= size["height"]
        no_overflow(page, size["width"])
        page.screenshot(path=str(ARTIFACTS / f"viewer-{size['width']}.png"))
    finally:
        context.close()


def test_typed_dates_and_filters_become_chips_that_remove(page, photo_server):
    page.goto(photo_server)
    page.fill("#q", "sunset July 2023")
    page.keyboard.press("Enter")
    # The date read from the words is a chip, and in the URL; the text left is the query.
    expect(page.locator("#chips .chip")).to_have_count(1)
    expect(page.locator("#chips .chip span")).to_have_text("taken 2023-07-01 – 2023-07-31")
    page.wait_for_url(re.compile(r"taken_from=2023-07-01.*taken_to=2023-07-31"))
    assert page.input_value("#q") == "sunset"
    expect(page.locator("#results li")).to_have_count(5)
    page.screenshot(path=str(ARTIFACTS / "chips.png"), full_page=True)
    page.click("#chips .chip button")  # remove the date
    expect(page.locator("#chips .chip")).to_have_count(0)
    expect(page.locator("#results li")).to_have_count(10)
    # The filters panel: a camera and an order, each a chip of its own.
    page.click("#filters-box summary")
    page.fill("#f-camera", "canon")
    page.select_option("#f-sort", "date")
    page.click("#filters button[type=submit]")
    expect(page.locator("#chips .chip span")).to_have_text(["camera canon", "newest first"])
    expect(page.locator("#results li")).to_have_count(5)
    names = result_names(page)
    assert names == sorted(names, reverse=True)  # IMG_0009 was taken last (taken 2019-08-19)
    page.go_back()
    expect(page.locator("#results li")).to_have_count(10)


def test_votes_leave_out_and_closeness_refine_the_query(page, photo_server):
    page.goto(photo_server + "/?q=a+photo&mode=visual")
    expect(page.locator("#results li")).to_have_count(10)
    third = page.locator("#results li").nth(2)
    voted = third.locator("a").get_attribute("data-id")
    third.locator(".votes .positive").click()
    page.wait_for_url(f"**positive={voted}*")
    expect(page.locator("#chips .chip span")).to_have_text([f"more like #{voted}"])
    expect(page.locator("#results li")).to_have_count(10)
    first = page.locator("#results li a").first.get_attribute("data-id")
    last = page.locator("#results li").last
    pushed = last.locator("a").get_attribute("data-id")
    last.locator(".votes .negative").click()
    expect(page.locator("#chips .chip span")).to_have_text([f"more like #{voted}", f"less like #{pushed}"])
    assert page.locator("#results li a").last.get_attribute("data-id") == pushed  # pushed to the end
    page.click("#filters-box summary")
    page.fill("#f-without", "people")
    page.click("#filters button[type=submit]")
    expect(page.locator("#chips .chip span")).to_have_text([f"more like #{voted}", f"less like #{pushed}", "without people"])
    page.go_back()
    page.go_back()
    expect(page.locator("#chips .chip span")).to_have_text([f"more like #{voted}"])
    assert page.locator("#results li a").first.get_attribute("data-id") == first
    # Closeness: the best hit is always kept; the button brings the rest back.
    page.goto(photo_server + "/?q=a+photo&mode=visual&cutoff=0.99")
    expect(page.locator("#weaker")).to_be_visible()
    kept = page.locator("#results li").count()
    assert 1 <= kept < 10
    page.click("#weaker")
    expect(page.locator("#results li")).to_have_count(10)


def test_viewer_arrows_and_a_region_searched(page, photo_server):
    page.goto(photo_server + "/?q=a+photo&mode=visual")
    expect(page.locator("#results li")).to_have_count(10)
    names = result_names(page)
    page.locator("#results li a").first.click()
    caption = page.locator("#viewer-caption")
    expect(caption).to_contain_text(names[0])
    page.keyboard.press("ArrowRight")
    expect(caption).to_contain_text(names[1])
    page.click("#viewer-next")
    expect(caption).to_contain_text(names[2])
    page.keyboard.press("ArrowLeft")
    expect(caption).to_contain_text(names[1])
    expect(caption).to_contain_text(re.compile(r"20\d\d-\d\d-\d\d 12:00 · (Apple iPhone 15|Canon EOS R5)"))
    item = page.locator("#results li a").nth(1).get_attribute("data-id")
    page.click("#crop-start")
    image = page.locator("#viewer-image").bounding_box()
    page.mouse.move(image["x"] + image["width"] * 0.1, image["y"] + image["height"] * 0.2)
    page.mouse.down()
    page.mouse.move(image["x"] + image["width"] * 0.6, image["y"] + image["height"] * 0.7, steps=5)
    page.mouse.up()
    expect(page.locator("#crop-box")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "crop.png"))
    page.click("#crop-search")
    expect(page).to_have_url(re.compile(rf"like={item}&crop=0\.1\d*%2C0\.2\d*%2C0\.[45]\d*%2C0\.[45]\d*"))
    expect(page.locator("#chips .chip span")).to_have_text([f"a region of #{item}"])
    expect(page.locator("#results li").first).to_be_visible()


def test_a_bad_upload_says_so_without_a_broken_image(page, photo_server):
    page.goto(photo_server)
    page.set_input_files("#file", files=[{"name": "broken.jpg", "mimeType": "image/jpeg",
                                          "buffer": b"\xff\xd8\xff\xe0 not really a jpeg"}])
    expect(page.locator("#message.error")).to_contain_text("That image could not be used")
    expect(page.locator("#query-image")).to_be_hidden()
    assert page.evaluate("fetch('/favicon.ico').then((r) => r.ok && r.headers.get('content-type'))").startswith("image/svg")
