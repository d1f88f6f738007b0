"""The try-it page and the API docs in a real browser: Playwright driving Debian's Chromium,
headless, against the real service (``python -m service``, as ``make serve`` runs it).

Every test checks that no request leaves the service's origin (the page and the docs must work
behind a firewall) and that the page logs no errors, Content-Security-Policy violations included
(``service/edge/security_headers.py``: each is reported as a console error); each saves a screenshot to
``BNN_TEST_ARTIFACTS`` (default ``tests/artifacts/``, not committed).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from harness.inputs import ROOT, SHIPPED, mnist_fixtures, shipped_calibration
from harness.server import running_service, wait_for

CHROMIUM = os.environ.get("BNN_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BNN_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
    if os.environ.get("BNN_REQUIRE_CHROMIUM"):  # set by .ci/run: a missing browser fails, never skips
        raise RuntimeError(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


@dataclass
class Visit:
    page: Page
    url: str
    outside: list[str] = field(default_factory=list)  # requests that tried to leave the origin
    errors: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    expected_errors: tuple[str, ...] = ()  # console errors a test provokes on purpose

    answers: list[dict] = field(default_factory=list)  # the JSON of the page's /predict answers

    def answer_to(self, action) -> dict:
        """Run ``action``, wait until the page has shown the answer for the resulting image (it
        classifies once drawing pauses), and return the JSON of that last /predict response."""
        seen = len(self.answers)
        action()
        self.page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=15_000)
        assert len(self.answers) > seen, "the page sent no request"
        return self.answers[-1]

    def shows(self, selector: str, text: str) -> None:
        self.page.wait_for_function("([s, t]) => document.querySelector(s)?.textContent.includes(t)",
                                    arg=[selector, text], timeout=10_000)


@pytest.fixture(scope="module")
def service() -> Iterator[str]:
    with running_service() as (url, _):
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


# every Content-Security-Policy violation, as a console error the visit's checks catch (Chromium logs
# most of them itself, in words that change between versions; this names the directive)
REPORT_VIOLATIONS = """window.cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.cspViolations.push(e.effectiveDirective);
  console.error(`CSP violation: ${e.effectiveDirective} blocked ${e.blockedURI || "inline"}`);
});"""


def open_page(browser: Browser, url: str, **options) -> tuple[BrowserContext, Visit]:
    context = browser.new_context(**options)
    page = context.new_page()
    visit = Visit(page, url)

    def guard(route: Route) -> None:
        if not (route.request.url.startswith(url + "/") or route.request.url == url):
            visit.outside.append(route.request.url)
            route.abort()
        elif route.request.url.startswith(url + "/predict"):  # pass it on, keeping a copy of the answer
            response = route.fetch()
            visit.answers.append(response.json())
            route.fulfill(response=response)
        else:
            route.continue_()

    context.route("**/*", guard)
    page.add_init_script(REPORT_VIOLATIONS)
    page.on("console", lambda message: visit.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: visit.errors.append(str(error)))
    return context, visit


@contextmanager
def visiting(browser: Browser, url: str, path: str, screenshot: str, **options) -> Iterator[Visit]:
    """A page of the service in a fresh context; on leaving, a screenshot to ARTIFACTS, then the
    checks every visit must pass: no request left the origin, no error but the expected ones."""
    context, visit = open_page(browser, url, **options)
    try:
        visit.page.goto(url + path)
        yield visit
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        visit.page.screenshot(path=str(ARTIFACTS / f"{screenshot}.png"), full_page=True)
    finally:
        context.close()
    assert visit.outside == [], "requests left the origin"
    assert [e for e in visit.errors if not e.startswith(visit.expected_errors or ("\0",))] == []


@pytest.fixture
def visit(browser, service, request) -> Iterator[Visit]:
    with visiting(browser, service, "/", request.node.name, viewport={"width": 1100, "height": 1000}) as page_visit:
        yield page_visit


def draw(page: Page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes on the pad, in its 280 x 280 coordinates."""
    box = page.locator("#pad").bounding_box()
    assert box is not None
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=12)
        page.mouse.up()


ONE = [[(150, 45), (140, 140), (135, 235)]]
SEVEN = [[(70, 55), (215, 50)], [(215, 50), (170, 130), (120, 235)]]


@pytest.mark.parametrize(("name", "strokes", "digit"), [("one", ONE, 1), ("seven", SEVEN, 7)])
def test_a_drawn_digit_gets_the_apis_answer(visit, name, strokes, digit):
    answer = visit.answer_to(lambda: draw(visit.page, strokes))
    assert answer["class"] == digit and not answer["refer"]  # straight pen strokes are digits: accepted
    assert answer["candidates"] == [digit]
    # a drawing on the pad is judged by the drawn channel's calibrated rule, and the page says so
    assert answer["channel"] == "drawn" and answer["threshold"] == shipped_calibration(channel="drawn")["threshold"]
    assert f"threshold calibrated for drawings {answer['threshold']:.3f}" in visit.page.inner_text("#reason")
    visit.shows("#class", str(answer["class"]))
    visit.shows("#decision", f"Accepted: it is a {digit}")
    digit = answer["class"]
    decision = visit.page.inner_text("#decision")
    assert decision.startswith("Accepted" if not answer["refer"] else "Refer to a human")
    assert f"{answer['entropy']:.3f}" in visit.page.inner_text("#entropy-text")
    rows = visit.page.locator("#bars li")
    assert rows.count() == 10
    top = rows.nth(digit).inner_text()
    assert f"{100 * answer['probabilities'][digit]:.1f}%" in top and votes_text(answer["votes"][digit]) in top
    seen_ink = visit.page.evaluate("() => { const d = document.getElementById('seen').getContext('2d')"
                                   ".getImageData(0, 0, 28, 28).data; let s = 0; for (let i = 0; i < d.length; i += 4)"
                                   " s += d[i]; return s / 255; }")
    assert seen_ink == pytest.approx(np.array(answer["input"]).sum() / 255, rel=1e-6) and seen_ink > 20


def test_undo_and_clear(visit):
    visit.answer_to(lambda: draw(visit.page, SEVEN))
    answer = visit.answer_to(lambda: visit.page.click("#undo"))  # the horizontal bar alone is left
    visit.shows("#class", str(answer["class"]))
    sent = len(visit.answers)
    visit.page.click("#undo")  # the last stroke: nothing left to classify, nothing sent
    assert visit.page.locator("#answer").is_hidden() and visit.page.locator("#empty").is_visible()
    assert visit.page.evaluate("() => document.body.dataset.state") == "idle" and len(visit.answers) == sent
    visit.answer_to(lambda: draw(visit.page, ONE))
    visit.page.click("#clear")
    assert visit.page.locator("#answer").is_hidden() and visit.page.locator("#empty").is_visible()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def test_an_uploaded_digit_file(visit):
    path, label = mnist_fixtures()[0]
    answer = visit.answer_to(lambda: visit.page.set_input_files("#file", str(path)))
    assert answer["class"] == label and not answer["refer"]
    assert answer["channel"] == "file" and answer["threshold"] == shipped_calibration(channel="file")["threshold"]
    assert "threshold calibrated for files" in visit.page.inner_text("#reason")
    visit.shows("#class", str(label))
    visit.shows("#decision", f"Accepted: it is a {label}")


def test_noise_is_referred_on_the_page(visit):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    payload = {"name": "noise.png", "mimeType": "image/png", "buffer": png(noise)}
    answer = visit.answer_to(lambda: visit.page.set_input_files("#file", files=[payload]))
    assert answer["refer"] is True and answer["refer_reason"] == "unfamiliar"
    visit.shows("#decision", "Probably not a digit: refer to a human")
    visit.shows("#queued", f"Sent to a reviewer: item {answer['review_id'][:8]}")
    reason = visit.page.inner_text("#reason")
    assert f"over the threshold calibrated for files {answer['threshold']:.3f}" in reason
    assert reason.endswith(f"If it is a digit at all: {listed(answer['candidates'])}.")


def listed(digits: list[int]) -> str:
    """[3, 5, 8] -> "3, 5 or 8", as the page words candidates."""
    words = [str(d) for d in digits]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def votes_text(votes: int) -> str:
    """How the page words a digit's votes: "1 vote", "37 votes"."""
    return f"{votes} vote" if votes == 1 else f"{votes} votes"


def fake_answer(**fields) -> dict:
    """An answer as the API words it (here unsure between a 3 and a 5), with ``fields`` replaced."""
    probabilities = [0.0, 0.0, 0.0, 0.55, 0.0, 0.4, 0.0, 0.0, 0.05, 0.0]
    return {"class": 3, "probabilities": probabilities, "entropy": 0.9, "mutual_information": 0.1,
            "expected_entropy": 0.8, "refer": True, "refer_reason": "uncertain", "candidates": [3, 5], "threshold": 0.2,
            "samples": 100, "audit": False, "model_version": "test", "spread": [0.0] * 10,
            "votes": [0, 0, 0, 60, 0, 40, 0, 0, 0, 0], "input": [[0] * 28 for _ in range(28)], **fields}


def test_an_uncertain_answer_names_its_candidates(visit):
    """The page words whatever the API says: here an answer unsure between a 3 and a 5."""
    fake = fake_answer()
    visit.page.route("**/predict*", lambda route: route.fulfill(json=fake))
    draw(visit.page, ONE)
    visit.shows("#decision", "Refer to a human: unsure: 3 or 5?")
    assert "Its best guess is 3." in visit.page.inner_text("#reason")
    # unsure between digits: the big digit stays, as for an accepted answer
    assert visit.page.locator("#class").is_visible() and visit.page.inner_text("#class") == "3"
    assert visit.page.locator("#guess").is_hidden()


def test_the_pen_control_sets_the_stroke_width(visit):
    ink = ("() => { const d = document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data;"
           " let s = 0; for (let i = 0; i < d.length; i += 4) s += 255 - d[i]; return s / 255; }")
    widths = {}
    for pen in ("8", "30"):
        visit.page.click("#clear")
        visit.page.select_option("#pen", pen)
        visit.answer_to(lambda: draw(visit.page, [[(140, 60), (140, 220)]]))
        widths[int(pen)] = visit.page.evaluate(ink)
    for width, inked in widths.items():  # a 160 px stroke with round caps
        assert inked == pytest.approx(160 * width + math.pi * (width / 2) ** 2, rel=0.1)


def test_a_non_image_shows_the_apis_detail(visit):
    visit.expected_errors = ("Failed to load resource: the server responded with a status of 400",)
    payload = {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"these are not pixels"}
    answer = visit.answer_to(lambda: visit.page.set_input_files("#file", files=[payload]))
    visit.shows("#error", answer["detail"])
    assert visit.page.inner_text("#error") == f"400: {answer['detail']}"
    assert visit.page.locator("#answer").is_hidden()


def test_the_samples_control_sets_n(visit):
    visit.page.fill("#samples", "37")
    answer = visit.answer_to(lambda: draw(visit.page, ONE))
    assert answer["samples"] == 37
    visit.shows("#n", "37")


def until(page: Page, predicate, what: str, timeout_s: float = 10) -> None:
    """Let the page run (and Playwright call its route handlers) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(20)


def test_the_page_is_busy_while_a_request_runs(visit):
    """Held /predict requests: from the moment one leaves until its answer (or error) arrives the page
    says "Classifying…", the answer region is aria-busy and Classify is marked disabled; then it is gone."""
    page = visit.page
    visit.expected_errors = ("Failed to load resource: the server responded with a status of 503",)
    held: list[Route] = []
    page.route("**/predict*", lambda route: held.append(route))  # answered below, when the test says
    busy = page.locator("#busy")
    assert busy.is_hidden() and page.locator("#empty").is_visible()

    draw(page, ONE)
    until(page, lambda: len(held) == 1, "the request to leave")
    assert busy.is_visible() and busy.inner_text() == "Classifying…"
    assert page.locator("#empty").is_hidden()  # no longer "Nothing classified yet"
    assert page.locator("#classify").is_disabled()  # aria-disabled: the focus stays on it
    page.click("#classify", force=True)  # clicked anyway: it sends nothing more
    assert busy.is_visible() and len(held) == 1
    held[0].fallback()  # on to the service
    page.wait_for_function("() => document.body.dataset.state === 'idle'", timeout=15_000)
    assert busy.is_hidden() and page.locator("#classify").is_enabled()
    assert page.locator("#answer").is_visible() and page.get_attribute("#answer", "aria-busy") == "false"
    assert page.inner_text("#class") == str(visit.answers[-1]["class"])

    page.click("#classify")  # again: the answer shown is marked stale until the new one (here an error) arrives
    until(page, lambda: len(held) == 2, "the second request to leave")
    assert busy.is_visible() and page.get_attribute("#answer", "aria-busy") == "true"
    held[1].fulfill(status=503, json={"detail": "overloaded: try again"})
    visit.shows("#error", "503: overloaded: try again")
    assert busy.is_hidden() and page.locator("#classify").is_enabled()


def test_classify_on_an_empty_pad_says_so(visit):
    page = visit.page
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url) if "/predict" in request.url else None)
    note = page.locator("#pad-note")
    assert note.is_hidden()
    page.click("#classify")
    visit.shows("#pad-note", "The pad is empty: draw a digit first")
    assert note.is_visible() and page.locator("#empty").is_visible()
    assert page.evaluate("() => document.body.dataset.state") == "idle"  # never busy: nothing was sent
    visit.answer_to(lambda: draw(page, ONE))  # drawing takes the note away
    assert note.is_hidden() and len(sent) == 1
    page.click("#clear")
    page.click("#classify")
    visit.shows("#pad-note", "The pad is empty")
    assert len(sent) == 1


def test_probably_not_a_digit_leads_the_answer(visit):
    """An image referred as unfamiliar shows no big digit (which would read as an answer): it leads with
    "Probably not a digit", the model's best guess small below; an accepted digit has its big digit back."""
    page = visit.page
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    payload = {"name": "noise.png", "mimeType": "image/png", "buffer": png(noise)}
    answer = visit.answer_to(lambda: page.set_input_files("#file", files=[payload]))
    assert answer["refer_reason"] == "unfamiliar"
    assert page.inner_text("#verdict").startswith("Probably not a digit")
    assert page.locator("#class").is_hidden()
    guess = page.locator("#guess")
    assert guess.is_visible() and guess.inner_text().startswith(f"The model's best guess: {answer['class']} (")
    size = "(s) => parseFloat(getComputedStyle(document.querySelector(s)).fontSize)"
    assert page.evaluate(size, "#guess") < page.evaluate(size, "#decision")

    path, label = mnist_fixtures()[0]
    accepted = visit.answer_to(lambda: page.set_input_files("#file", str(path)))
    assert not accepted["refer"] and page.locator("#class").is_visible() and page.inner_text("#class") == str(label)
    assert guess.is_hidden() and page.evaluate(size, "#class") > 2 * page.evaluate(size, "#decision")


@pytest.mark.parametrize("width", [320, 1100])
def test_votes_and_scale_labels_read_cleanly(browser, service, width):
    """At a phone's width and a desktop's: each votes cell is one line ("1 vote", "996 votes"), and the
    entropy axis's labels do not run into each other."""
    fake = fake_answer(samples=1000, votes=[1, 0, 0, 996, 0, 2, 0, 0, 1, 0])
    with visiting(browser, service, "/", f"votes-{width}", viewport={"width": width, "height": 900}) as visit:
        page = visit.page
        page.route("**/predict*", lambda route: route.fulfill(json=fake))
        draw(page, ONE)
        visit.shows("#decision", "Refer to a human: unsure: 3 or 5?")
        cells = page.eval_on_selector_all("#bars .votes, #bars .value", """(cells) => cells.map((c) => [c.className,
            c.textContent, c.getBoundingClientRect().height, parseFloat(getComputedStyle(c).lineHeight)])""")
        assert [text for kind, text, _, _ in cells if kind == "votes"] == [votes_text(v) for v in fake["votes"]]
        for _, text, height, line in cells:
            assert height < 1.5 * line, f"{text!r} wraps: {height} px high, lines of {line} px"
        ticks = page.eval_on_selector_all("#entropy-axis span", """(spans) => spans.map((s) => {
            const r = s.getBoundingClientRect(); return [s.textContent, r.left, r.right]; })""")
        assert [text for text, _, _ in ticks] == ["0.001", "0.01", "0.1", "1"]
        assert all(before[2] + 4 < after[1] for before, after in pairwise(ticks)), ticks
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width


def test_the_threshold_mark_lies_inside_the_bar(visit):
    """The entropy bar is on a log scale from 0.001 nats to ln 10: the threshold mark lies well inside it,
    where the scale puts it, left of the fill's end for a referred answer and right of it for an accepted one."""
    page = visit.page
    noise = {"name": "noise.png", "mimeType": "image/png",
             "buffer": png(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))}
    for act, referred in ((lambda: draw(page, ONE), False),
                          (lambda: page.set_input_files("#file", files=[noise]), True)):
        answer = visit.answer_to(act)
        assert answer["refer"] is referred
        bar = page.eval_on_selector("#entropy-scale", "(e) => { const r = e.getBoundingClientRect();"
                                    " return [r.left + e.clientLeft, e.clientWidth]; }")
        mark, fill = (page.locator(s).bounding_box() for s in ("#threshold-mark", "#entropy-fill"))
        assert mark is not None and fill is not None
        left, inner = bar
        centre = mark["x"] + mark["width"] / 2
        assert left + 0.1 * inner < centre < left + 0.9 * inner  # strictly inside, off both edges
        at = math.log(answer["threshold"] / 0.001) / math.log(math.log(10) / 0.001)
        assert centre == pytest.approx(left + at * inner, abs=2)
        end = fill["x"] + fill["width"]
        assert (end > centre) if referred else (end < centre)
        assert f"threshold {answer['threshold']:.3f}" in page.inner_text("#threshold-label")
    assert "log scale" in page.get_attribute("#entropy-scale", "aria-label")
    assert page.inner_text("#entropy-scale-note").startswith("Log scale, in nats")


def test_keyboard_and_screen_reader_labels(visit):
    page = visit.page
    for role, name in (("button", "Undo"), ("button", "Clear"), ("button", "Classify")):
        assert page.get_by_role(role, name=name).count() == 1
    assert page.get_by_label("Samples (N)").count() == 1
    assert page.get_by_role("img", name="Drawing area").count() == 1
    focused = []
    for _ in range(8):
        page.keyboard.press("Tab")
        focused.append(page.evaluate("() => document.activeElement.id || document.activeElement.tagName"))
    assert {"pad", "undo", "clear", "classify", "file", "samples"} <= set(focused)
    path, label = mnist_fixtures()[1]
    page.focus("#file")
    answer = visit.answer_to(lambda: page.set_input_files("#file", str(path)))
    page.focus("#classify")
    again = visit.answer_to(lambda: page.keyboard.press("Enter"))  # classify again from the keyboard
    assert answer["class"] == again["class"] == label


def test_phone_width(browser, service):
    with visiting(browser, service, "/", "phone", viewport={"width": 390, "height": 844}, is_mobile=True,
                  has_touch=True) as visit:
        answer = visit.answer_to(lambda: draw(visit.page, ONE))
        visit.shows("#class", str(answer["class"]))
        assert visit.page.evaluate("() => document.documentElement.scrollWidth") <= 390  # nothing wider than the screen


def test_swagger_ui_renders_offline_with_the_routes(browser, service):
    """Under the service's Content-Security-Policy (no inline script): it renders, and "Try it out"
    calls the API."""
    with visiting(browser, service, "/docs", "docs") as visit:
        page = visit.page
        page.wait_for_selector(".opblock-summary-path", timeout=15_000)
        paths = set(page.locator(".opblock-summary-path").all_inner_texts())
        page.click("#operations-probes-healthz_healthz_get .opblock-summary")
        page.click("#operations-probes-healthz_healthz_get .try-out__btn")
        page.click("#operations-probes-healthz_healthz_get .execute")
        page.wait_for_selector("#operations-probes-healthz_healthz_get .live-responses-table tbody "
                               ".response-col_status", timeout=10_000)
        status = page.locator("#operations-probes-healthz_healthz_get .live-responses-table tbody .response-col_status")
        assert status.first.inner_text().strip() == "200"
    assert {"/predict", "/predict/batch", "/v2/models/{model_name}/infer"} <= {p.replace("\u200b", "") for p in paths}


def test_redoc_renders_offline(browser, service):
    with visiting(browser, service, "/redoc", "redoc") as visit:
        visit.page.wait_for_selector("text=Classify one image", timeout=15_000)


# what markup injected into a page (an answer's text, a reviewer's name) would try to run
INLINE_SCRIPT = """() => { const s = document.createElement("script"); s.textContent = "window.injected = 'script'";
  document.body.append(s); return window.injected ?? null; }"""
INLINE_HANDLER = """() => { const d = document.createElement("div");
  d.innerHTML = '<img src="/no-such-image" onerror="window.injected = \\'handler\\'">'; document.body.append(d); }"""


@pytest.mark.parametrize("path", ["/", "/review", "/docs", "/redoc"])
def test_the_content_security_policy_is_enforced(browser, service, path):
    """Each page runs under its policy: injected inline script and inline handlers do not run, and
    each attempt is reported; the page's own scripts ran (nothing else was reported: the visit's checks)."""
    with visiting(browser, service, path, f"csp{path.replace('/', '-')}") as visit:
        visit.expected_errors = ("CSP violation: script-src-elem", "CSP violation: script-src-attr",
                                 "Executing inline", "Failed to load resource")
        page = visit.page
        page.wait_for_load_state("load")
        assert page.evaluate("() => window.cspViolations") == []
        assert page.evaluate(INLINE_SCRIPT) is None
        page.evaluate(INLINE_HANDLER)
        page.wait_for_function("() => window.cspViolations.includes('script-src-attr')", timeout=10_000)
        assert page.evaluate("() => [window.injected ?? null, window.cspViolations]") == [
            None, ["script-src-elem", "script-src-attr"]]


@pytest.mark.parametrize("path", ["/", "/review", "/docs"])
def test_no_site_can_frame_a_page(browser, service, path):
    """frame-ancestors 'none' (and X-Frame-Options): a page of another site framing the review page
    (to trick a click) gets Chromium's error page in the frame, not the service's."""
    context = browser.new_context()
    try:
        context.route("http://elsewhere.test/**", lambda route: route.fulfill(
            content_type="text/html", body=f'<iframe src="{service}{path}"></iframe>'))
        page = context.new_page()
        page.goto("http://elsewhere.test/")
        page.wait_for_load_state("load")
        (framed,) = page.main_frame.child_frames
        assert framed.url.startswith("chrome-error://")
    finally:
        context.close()


def test_what_the_page_sends_reaches_the_review_page_and_keys_label_it(browser, tmp_path):
    """A drawn 7, noise and three digit files sent through the try-it page (every accepted answer
    audited) appear on the review page; a reviewer labels all five by keyboard; /review/stats and
    the gauges count them."""
    from tests.metrics_text import parse_samples, value
    from tests.review_client import TOKEN, TOKENS, bearer

    env = {"BNN_AUDIT_FRACTION": "1", "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db", "BNN_REVIEW_TOKENS": TOKENS,
           "BNN_REVIEW_STATS_INTERVAL_S": "0.5"}  # the gauges are read from the store in the background
    with running_service(env) as (url, _):
        truth: dict[str, str] = {}
        with visiting(browser, url, "/", "review-sent", viewport={"width": 1100, "height": 1000}) as visit:
            drawn = visit.answer_to(lambda: draw(visit.page, SEVEN))
            truth[drawn["review_id"]] = "7"
            visit.page.click("#clear")
            noise = {"name": "noise.png", "mimeType": "image/png",
                     "buffer": png(np.random.default_rng(3).integers(0, 256, (64, 64), dtype=np.uint8))}
            referred = visit.answer_to(lambda: visit.page.set_input_files("#file", files=[noise]))
            assert referred["refer"] and referred["review_id"]
            truth[referred["review_id"]] = "n"
            for path, label in mnist_fixtures()[:3]:
                answer = visit.answer_to(lambda path=path: visit.page.set_input_files("#file", str(path)))
                assert answer["audit"] and answer["review_id"]
                truth[answer["review_id"]] = str(label)
        assert len(truth) == 5
        wait_for(lambda: (r := httpx.get(url + "/review/stats", headers=bearer())).status_code == 200
                 and r.json()["stored_items"] == 5, what="five stored items")

        with visiting(browser, url, f"/review#token={TOKEN}", "review-labelled",
                      viewport={"width": 1100, "height": 1000}) as review:
            page = review.page
            assert "token" not in page.url  # taken from the address into the page's memory
            labelled = []
            for _ in range(5):
                page.wait_for_function("(done) => { const s = document.getElementById('item');"
                                       " return !s.hidden && s.dataset.item && !done.includes(s.dataset.item); }",
                                       arg=labelled, timeout=10_000)
                item_id = page.evaluate("() => document.getElementById('item').dataset.item")
                if not labelled:  # a reload asks for the token again, then shows the item this reviewer holds
                    assert TOKEN not in page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
                    page.reload()
                    page.wait_for_selector("#login:not([hidden])", timeout=10_000)
                    page.fill("#token", TOKEN)
                    page.click("#start")
                    page.wait_for_function("(id) => document.getElementById('item').dataset.item === id "
                                           "&& !document.getElementById('item').hidden", arg=item_id, timeout=10_000)
                page.wait_for_function("() => { const i = document.getElementById('input-img');"
                                       " return i.complete && i.naturalWidth === 28; }", timeout=10_000)
                page.keyboard.press(truth[item_id])
                labelled.append(item_id)
            page.wait_for_selector("#empty:not([hidden])", timeout=10_000)
            review.shows("#done-today", "5 by you")
            # the drawn 7 is the drawn channel's, promised another alpha: its own estimate, not the files'
            review.shows("#accepted-error", "0 of 3")
            review.shows("#drawn-accepted-error", "0 of 1")
            review.shows("#drawn-accepted-error", "promise ≤ 0.40 %")
        assert sorted(labelled) == sorted(truth)
        stats = httpx.get(url + "/review/stats", headers=bearer()).json()
        audits = Counter(label for item_id, label in truth.items() if item_id != referred["review_id"])
        # at fraction 1 the referred upload is an audit too (marked referred): out of the accepted error
        assert stats["labelled"]["audit"] == {**audits, "not_a_digit": 1}
        assert stats["labelled"]["referred"] == {}
        assert stats["referrals"]["all"]["not_a_digit"] == 1
        error = stats["accepted_error"]
        assert (error["audited"], error["wrong"], error["drawn"]) == (3, 0, 1)
        assert (stats["drawn_accepted_error"]["audited"], stats["drawn_accepted_error"]["wrong"]) == (1, 0)
        def gauges_read() -> dict | None:
            metrics = parse_samples(httpx.get(url + "/metrics").text)
            return metrics if value(metrics, "bnn_audited_accepted_labels") == 3 else None

        metrics = wait_for(gauges_read, timeout_s=30, what="the gauges' next read of the store")
        assert value(metrics, "bnn_audited_accepted_error_ratio") == 0
        assert value(metrics, "bnn_audited_accepted_error_ratio_upper") == pytest.approx(1 - 0.025 ** (1 / 3), abs=1e-9)
        assert value(metrics, "bnn_review_labels_total", reason="audit", outcome="not_a_digit") == 1


def test_the_models_page_shows_the_shadow_and_promotes_and_refuses(browser, tmp_path):
    """/admin: the held models and every worker's version; a shadow loaded from the page compares live
    answers; promoting it makes it live on both workers; a broken candidate is refused with its reason."""
    from harness import candidates

    token = "page-admin-token-0123456789"
    good, broken = candidates.good(tmp_path), candidates.with_nan(tmp_path)
    env = {"BNN_ADMIN_TOKENS": f"ops:{token}", "BNN_REVIEW_DB": f"sqlite:///{tmp_path}/review.db",
           "BNN_SHADOW_FRACTION": "1", "BNN_MODELS_DIR": str(tmp_path)}  # candidates load only from there
    shipped = json.loads(SHIPPED.with_suffix(".json").read_text())["model_version"]
    with running_service(env) as (url, _), visiting(browser, url, f"/admin#token={token}", "admin",
                                                     viewport={"width": 1100, "height": 1000}) as visit:
        visit.expected_errors = ("Failed to load resource",)  # the refusal below is a 422
        page = visit.page
        assert "token" not in page.url
        visit.shows("#held", shipped)
        # the token is in the page's memory only: not in storage, and a reload asks for it again
        assert token not in page.evaluate("() => JSON.stringify([{...sessionStorage}, {...localStorage}])")
        page.reload()
        page.wait_for_selector("#login:not([hidden])", timeout=10_000)
        assert page.locator("#models").is_hidden()
        page.fill("#token", token)
        page.click("#login button[type=submit]")
        visit.shows("#held", shipped)
        visit.shows("#workers", "2 worker(s) serving")
        page.fill("#path", str(good))
        page.click("#load-shadow")
        visit.shows("#result", "Done: generation 1")
        visit.shows("#held", "head-candidate")
        for path, _ in mnist_fixtures()[:8]:
            assert httpx.post(url + "/predict", content=path.read_bytes(),
                              headers={"Content-Type": "image/png"}).json()["model_version"] == shipped
        page.wait_for_function("() => Number.parseInt(document.getElementById('compared').textContent) === 8",
                               timeout=15_000)
        visit.shows("#class-agreement", "100.00 %")
        visit.shows("#on-audits", "labelled audit")  # none labelled yet: the page says where it comes from
        page.click("#promote-shadow")
        visit.shows("#result", "live head-candidate on 2 worker(s)")
        visit.shows("#workers", "head-candidate (generation 2)")
        page.fill("#path", str(broken))
        page.click("#promote-path")
        visit.shows("#message", "refused (weights)")
        visit.shows("#held", "head-candidate")
