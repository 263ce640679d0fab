"""Checks of the built static HTML book (``make check-html``, ``python -m iml.report.build check-html``).

:func:`external_refs` finds pages that load scripts/styles/images from the network (the book must work offline);
:func:`check_html` also opens every notebook page in headless Chromium (:func:`render_page`) and checks, in the
rendered DOM, that its figures are there and that the main-result page's widget explorer rendered.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from iml.core import files

__all__ = ["external_refs", "chromium_binary", "chromium_flags", "render_page", "PageCheck", "check_page_dom",
           "check_html"]

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


def render_page(page: Path, screenshot: Path | None = None, timeout: int = 120) -> str:
    """The DOM of `page` after its scripts ran (headless chromium); optionally save a screenshot."""
    exe = chromium_binary()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (make check-html installs it)")
    with tempfile.TemporaryDirectory(prefix="iml-chromium-") as prof:
        url = page.resolve().as_uri()
        dom = subprocess.run([exe, *chromium_flags(prof), "--dump-dom", url], capture_output=True, text=True,
                             timeout=timeout).stdout
        if screenshot is not None:
            subprocess.run([exe, *chromium_flags(prof), f"--screenshot={screenshot}", "--window-size=1280,2400",
                            url], capture_output=True, text=True, timeout=timeout)
    return dom


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


def check_html(html_dir: str | os.PathLike = files.ROOT / "_build" / "html", screenshots: str | os.PathLike | None = None,
               browser: bool = True) -> list[PageCheck]:
    """Check the built book: no external script/style loads anywhere; with chromium, every notebook
    page renders its figures and the main-result page its widget explorer. Returns one PageCheck per
    checked page (problems empty = fine)."""
    html_dir = Path(html_dir)
    checks = []
    ext = external_refs(html_dir)
    checks.append(PageCheck("(all pages: offline)", [f"{p}: {h}" for p, hs in ext.items() for h in hs]))
    if not browser:
        return checks
    shots = Path(screenshots) if screenshots else html_dir.parent / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    pages = sorted((html_dir / "book" / "executed").glob("*.html"))
    pages = [p for p in pages if p.stem != "claims"]
    if not pages:
        checks.append(PageCheck("book/executed/*.html", ["no notebook pages were built"]))
    for p in pages:
        shot = shots / f"{p.stem}.png"
        dom = render_page(p, shot)
        expect_w = p.stem == "main_result"
        checks.append(PageCheck(str(p.relative_to(html_dir)), check_page_dom(dom, expect_w), str(shot)))
    return checks

