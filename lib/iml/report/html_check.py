"""Checks of the built static HTML book (``make check-html``, ``python -m iml.report.build check-html``).

:func:`external_refs` finds pages that load scripts/styles/images from the network (the book must work offline);
:func:`check_html` also opens every notebook page in headless Chromium (:func:`render_page`) and checks, in the
rendered DOM, that its figures are there and that the main-result page's widget explorer rendered.
"""
from __future__ import annotations

import dataclasses
import html as _html
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from iml.core import files

__all__ = ["VIEWPORT", "external_refs", "chromium_binary", "chromium_flags", "render_page", "PageCheck",
           "check_page_dom", "MEASURE_JS", "measurements", "overflow_problems", "check_html"]

VIEWPORT = (1400, 900)
"""The reader's window (CSS px) every page is measured and shot at."""
MAX_SHOT_HEIGHT = 16000

_EXT = re.compile(r"""<(script|link|img|iframe)\b[^>]*?\b(src|href)\s*=\s*["'](https?:)?//[^"']+["']""", re.I)


def external_refs(html_dir: str | os.PathLike) -> dict[str, list[str]]:
    """page -> external (http/https/protocol-relative) script/link/img/iframe tags it loads.

    Plain hyperlinks (<a href>) are fine offline and not listed.
    """
    out: dict[str, list[str]] = {}
    for p in sorted(Path(html_dir).rglob("*.html")):
        text = p.read_text(errors="replace")
        hits = [m.group(0) for m in _EXT.finditer(text)]
        # <link rel="canonical"/"prev"> etc. are not loads; keep stylesheets, scripts, preloads, icons.
        hits = [h for h in hits if not re.search(r"""rel\s*=\s*["'](canonical|next|prev|search)""", h)]
        if hits:
            out[str(p.relative_to(html_dir))] = hits
    return out


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def chromium_flags(profile: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--no-first-run", f"--user-data-dir={profile}",
            "--virtual-time-budget=15000", "--hide-scrollbars"]


MEASURE_JS = r"""
(function () {
  function measure() {
    var vw = document.documentElement.clientWidth;
    var col = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
    var c = col.getBoundingClientRect();
    var out = {viewport: vw, column: [Math.round(c.left), Math.round(c.right)],
               page_width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
               items: []};
    var sel = "table, img, pre, svg, iframe, .cell_output .output, .widget-box, .pst-scrollable-table-container, .iml-scroll";
    col.querySelectorAll(sel).forEach(function (el) {
      var r = el.getBoundingClientRect();
      if (r.width === 0 || r.height === 0) return;
      var st = getComputedStyle(el), clipper = null, p = el.parentElement;
      while (p && p !== col) {
        var ox = getComputedStyle(p).overflowX;
        if (ox === "auto" || ox === "scroll" || ox === "hidden") { clipper = p; break; }
        p = p.parentElement;
      }
      var cr = clipper ? clipper.getBoundingClientRect() : null;
      var label = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
        (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\s+/).slice(0, 2).join(".") : "");
      var text = (el.innerText || el.getAttribute("alt") || "").replace(/\s+/g, " ").slice(0, 60);
      out.items.push({what: label, text: text, left: Math.round(r.left), right: Math.round(r.right),
        width: Math.round(r.width), scroll_width: el.scrollWidth, client_width: el.clientWidth,
        overflow_x: st.overflowX, clipper: clipper ? clipper.tagName.toLowerCase() + "." +
          (clipper.className || "").toString().trim().split(/\s+/)[0] : null,
        clip_left: cr ? Math.round(cr.left) : null, clip_right: cr ? Math.round(cr.right) : null,
        clip_overflow: clipper ? getComputedStyle(clipper).overflowX : null,
        clip_deliberate: !!(clipper && clipper.closest(".iml-scroll")),
        natural_width: el.naturalWidth || null});
    });
    document.body.setAttribute("data-iml-measure", JSON.stringify(out));
  }
  window.addEventListener("load", function () { setTimeout(measure, 1500); });
})();
"""
"""Injected into a copy of each page: after load, records the content column, the page width and, for every
table, image, code block and cell output in the column, its box, its content width and the box of the nearest
ancestor that clips or scrolls it, as JSON in ``body[data-iml-measure]``."""


def render_page(page: Path, screenshot: Path | None = None, timeout: int = 120, measure: bool = False,
                window: tuple[int, int] = VIEWPORT) -> str:
    """The DOM of `page` after its scripts ran (headless chromium at `window`); optionally save a full-height
    screenshot. `measure`: run :data:`MEASURE_JS` in it first (read the result with :func:`measurements`)."""
    exe = chromium_binary()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (make check-html installs it)")
    target, tmp = page, None
    if measure:  # a copy beside the page, so its relative links still resolve
        text = page.read_text(errors="replace")
        tag = f"<script>{MEASURE_JS}</script>"
        text = text.replace("</body>", tag + "</body>") if "</body>" in text else text + tag
        tmp = page.with_name(f".iml-measure-{page.name}")
        tmp.write_text(text)
        target = tmp
    try:
        with tempfile.TemporaryDirectory(prefix="iml-chromium-") as prof:
            url = target.resolve().as_uri()
            dom = subprocess.run([exe, *chromium_flags(prof), f"--window-size={window[0]},{window[1]}", "--dump-dom",
                                  url], capture_output=True, text=True, timeout=timeout).stdout
            if screenshot is not None:
                m = measurements(dom)
                height = min(MAX_SHOT_HEIGHT, max(window[1], int(m["height"]) if m else 2400))
                subprocess.run([exe, *chromium_flags(prof), f"--screenshot={screenshot}",
                                f"--window-size={window[0]},{height}", page.resolve().as_uri()],
                               capture_output=True, text=True, timeout=timeout)
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)
    return dom


def measurements(dom: str) -> dict | None:
    """What :data:`MEASURE_JS` recorded in a dumped DOM, or None."""
    m = re.search(r'data-iml-measure="([^"]*)"', dom)
    return json.loads(_html.unescape(m.group(1))) if m else None


def overflow_problems(m: dict | None, tolerance: int = 2) -> list[str]:
    """What does not fit a page's content column: an element reaching past the column or the window, the page
    scrolling sideways, content cut off by an ancestor that hides overflow, or content that needs a sideways
    scroll (allowed only inside an ``iml-scroll`` container, where the scrolling is deliberate)."""
    if m is None:
        return ["the width measurement did not run (no data-iml-measure in the DOM)"]
    left, right = m["column"]
    vw = m["viewport"]
    out = []
    if m["page_width"] > vw + tolerance:
        out.append(f"the page scrolls sideways: {m['page_width']} px wide in a {vw}-px window")
    for it in m["items"]:
        name = f"{it['what']} \"{it['text'][:40]}\""
        if it["what"].startswith("pre") and it["scroll_width"] > it["client_width"] + tolerance \
                and it["overflow_x"] in ("auto", "scroll", "hidden"):
            out.append(f"{name}: lines {it['scroll_width']} px long in a {it['client_width']}-px code block: "
                       + ("cut off" if it["overflow_x"] == "hidden" else "needs a sideways scroll"))
        if it["clipper"] is None:
            if it["right"] > right + tolerance or it["left"] < left - tolerance or it["right"] > vw:
                out.append(f"{name}: {it['width']} px reaches {it['left']}..{it['right']}, past the content column "
                           f"{left}..{right}")
            continue
        if it["clip_right"] > right + tolerance:
            out.append(f"{name}: its container {it['clipper']} reaches {it['clip_right']}, past the column's "
                       f"right edge {right}")
        if it["right"] > it["clip_right"] + tolerance or it["left"] < it["clip_left"] - tolerance:
            where = "cut off" if it["clip_overflow"] == "hidden" else "needs a sideways scroll"
            if where == "cut off" or not it["clip_deliberate"]:
                out.append(f"{name}: {it['width']} px in a {it['clip_right'] - it['clip_left']}-px "
                           f"{it['clipper']}: {where}")
    return out


@dataclasses.dataclass
class PageCheck:
    page: str
    problems: list[str]
    screenshot: str | None = None


def check_page_dom(dom: str, expect_widgets: bool, expect_figures: int = 1) -> list[str]:
    problems = []
    imgs = len(re.findall(r"<img\b[^>]*src=\"(data:image/png|[^\"]*\.png)", dom))
    if imgs < expect_figures:
        problems.append(f"expected at least {expect_figures} figure(s), found {imgs} <img>")
    if expect_widgets:
        if "iml-explorer" not in dom or "widget-toggle-buttons" not in dom:
            problems.append("the widget explorer did not render (no rendered ipywidgets in the DOM)")
        if "iml-explorer-view" not in dom:
            problems.append("the explorer's precomputed views are missing")
    return problems


def _expectations(page: Path) -> tuple[bool, int]:
    """(widgets expected, figures expected) for a page: notebook pages have figures, the intro and the claims
    page the forest plot, the main-result page the widget explorer."""
    executed = page.parent.name == "executed"
    return page.stem == "main_result", 1 if executed or page.stem == "intro" else 0


def check_html(html_dir: str | os.PathLike = files.ROOT / "_build" / "html", screenshots: str | os.PathLike | None = None,
               browser: bool = True, shoot: bool = True) -> list[PageCheck]:
    """Check the built book: no external script/style loads anywhere and no download button (the config turns it
    off); with chromium, every page of the book at a 1400-px window: figures and the explorer rendered, nothing
    wider than the content column (:func:`overflow_problems`), a full-height screenshot kept. Returns one
    PageCheck per checked page (problems empty = fine). `shoot=False`: measure only, no screenshots (tests)."""
    html_dir = Path(html_dir)
    checks = []
    ext = external_refs(html_dir)
    checks.append(PageCheck("(all pages: offline)", [f"{p}: {h}" for p, hs in ext.items() for h in hs]))
    pages = sorted((html_dir / "book").rglob("*.html"))
    pages = [p for p in pages if not p.name.startswith(".iml-measure-")]
    buttons = [str(p.relative_to(html_dir)) for p in pages if "dropdown-download-buttons" in p.read_text(errors="replace")]
    checks.append(PageCheck("(all pages: no download button)", [f"{p}: shows the download button" for p in buttons]))
    if not browser:
        return checks
    shots = Path(screenshots) if screenshots else html_dir.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    if not any(p.parent.name == "executed" for p in pages):
        checks.append(PageCheck("book/executed/*.html", ["no notebook pages were built"]))
    for p in pages:
        rel = p.relative_to(html_dir / "book").with_suffix("")
        shot = shots / ("-".join(rel.parts) + ".png") if shoot else None
        dom = render_page(p, shot, measure=True)
        expect_w, expect_f = _expectations(p)
        problems = check_page_dom(dom, expect_w, expect_f) + overflow_problems(measurements(dom))
        checks.append(PageCheck(str(p.relative_to(html_dir)), problems, str(shot) if shot else None))
    return checks
