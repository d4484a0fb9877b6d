"""The search page with a phone's photos, in headless Chromium at phone and desktop width: no
horizontal overflow, even tiles, filters and chips, refinements, closeness, the viewer's arrows and
a region searched, a bad upload."""

from __future__ import annotations

import re
import shutil

import pytest

from test_browser import ARTIFACTS, browser, expect, page, result_names  # noqa: F401 - fixtures


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
    settings = Settings(runtime="torch", vector_storage="float32", home=base / "home", model=str(tiny_model[0]), pretrained=str(tiny_model[1]),
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
        page.click("#filters-box summary")  # the filters panel open: still no sideways scrolling
        expect(page.locator("#f-camera")).to_be_visible()
        no_overflow(page, size["width"])
        page.screenshot(path=str(ARTIFACTS / f"filters-{size['width']}.png"))
        page.click("#filters-box summary")
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
