"""The Sphinx site: every citation resolves, the site builds with warnings as errors, and the
built site works offline (no page loads anything from the network; MathJax is bundled)."""

from __future__ import annotations

import html
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _bib_keys() -> set:
    return set(re.findall(r"^@\w+\{([^,\s]+),", (DOCS / "references.bib").read_text(), re.M))


def _cited_keys() -> dict:
    cites = {}
    files = list(DOCS.glob("**/*.rst")) + list((ROOT / "diffprior").rglob("*.py")) + list(
        (ROOT / "operators").rglob("*.py"))
    for f in files:
        for group in re.findall(r":cite(?::[pt])?:`([^`]+)`", f.read_text(errors="replace")):
            for key in group.split(","):
                cites.setdefault(key.strip(), f.relative_to(ROOT))
    return cites


def test_every_citation_is_in_the_bibliography():
    keys = _bib_keys()
    assert {"chung2024p2l", "chung2023dps", "rout2023solving", "he2023ldir", "song2021ddim", "ho2020ddpm",
            "rombach2022ldm", "balke2022scico", "zhang2018lpips"} <= keys
    missing = {k: str(f) for k, f in _cited_keys().items() if k not in keys}
    assert not missing, f"cited but not in docs/references.bib: {missing}"


needs_docs_extra = pytest.mark.skipif(
    importlib.util.find_spec("sphinx") is None or importlib.util.find_spec("sphinxcontrib.bibtex") is None,
    reason="needs the docs extra (pip install -e '.[docs]')")


@pytest.fixture(scope="module")
def html_build(tmp_path_factory):
    """One HTML build of docs/ (warnings as errors, all of them reported) for the tests below:
    the finished process and the output folder."""
    out = tmp_path_factory.mktemp("docs")
    proc = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           "-d", str(out / "doctrees"), str(DOCS), str(out / "html")],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    return proc, out / "html"


@pytest.mark.docs
@needs_docs_extra
def test_sphinx_build_has_no_warnings(html_build):
    proc, html_dir = html_build
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (html_dir / "stable_diffusion.html").is_file()


# ----------------------------------------------------------------------------- offline site
_TAG = re.compile(r"<(script|link|img|source|iframe|embed|object|video|audio)\b([^>]*)>", re.I | re.S)
_ATTR = re.compile(r"""([\w:-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s"'>]+)""")
#: <link rel=...> values that make the browser fetch the href (anything but navigation links).
_FETCHING_RELS = {"stylesheet", "preload", "prefetch", "preconnect", "dns-prefetch", "modulepreload", "icon",
                  "shortcut", "apple-touch-icon", "manifest", "mask-icon", "import"}
_CSS_REMOTE = re.compile(r"""(@import\s+(url\(\s*)?["']?|url\(\s*["']?)\s*(https?:)?//""", re.I)


def _attrs(text: str) -> dict:
    return {k.lower(): html.unescape(v.strip("\"'")) for k, v in _ATTR.findall(text)}


def _is_remote(url: str) -> bool:
    return bool(re.match(r"\s*(https?:)?//", url, re.I))


def _offline_problems(html_dir: Path) -> list:
    """Everything in a built site that a browser would fetch from the network: remote
    scripts, stylesheets, fonts and images in the pages, ``//cdn`` URLs outside plain links,
    remote ``@import``/``url()`` in the pages' inline styles and in the site's CSS files."""
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        rel = page.relative_to(html_dir)
        text = page.read_text(errors="replace")
        for tag, attr_text in _TAG.findall(text):
            attrs = _attrs(attr_text)
            tag = tag.lower()
            if tag == "link":
                rels = set(attrs.get("rel", "").lower().split())
                if rels & _FETCHING_RELS and _is_remote(attrs.get("href", "")):
                    problems.append(f"{rel}: <link rel={attrs.get('rel')!r} href={attrs['href']!r}>")
                continue
            for key in ("src", "data", "srcset", "poster"):
                if _is_remote(attrs.get(key, "")):
                    problems.append(f"{rel}: <{tag} {key}={attrs[key]!r}>")
        # //cdn anywhere but in the targets of ordinary links (<a href=...>)
        without_links = re.sub(r"<a\b[^>]*>", "", text, flags=re.I | re.S)
        for m in re.finditer(r"(https?:)?//cdn[\w.-]*[^\s\"'<>)]*", without_links, re.I):
            problems.append(f"{rel}: CDN URL {m.group(0)!r}")
        for style in re.findall(r"<style\b[^>]*>(.*?)</style>", text, re.I | re.S):
            if _CSS_REMOTE.search(style):
                problems.append(f"{rel}: remote @import/url() in an inline <style>")
    for css in sorted(html_dir.rglob("*.css")):
        for m in _CSS_REMOTE.finditer(css.read_text(errors="replace")):
            problems.append(f"{css.relative_to(html_dir)}: remote {m.group(0)!r}")
    return problems


def _mathjax_scripts(page: Path) -> list:
    """The src of every script of the page that is MathJax (not its inline configuration)."""
    scripts = [_attrs(t) for tag, t in _TAG.findall(page.read_text(errors="replace")) if tag.lower() == "script"]
    return [a["src"] for a in scripts if "mathjax" in a.get("src", "").lower()]


def _math_pages(html_dir: Path) -> list:
    return [p for p in sorted(html_dir.rglob("*.html"))
            if re.search(r'class="math notranslate', p.read_text(errors="replace"))]


@pytest.mark.docs
@needs_docs_extra
def test_built_site_loads_nothing_from_the_network(html_build):
    proc, html_dir = html_build
    assert (html_dir / "index.html").is_file(), proc.stderr[-5000:]
    problems = _offline_problems(html_dir)
    assert not problems, "the built site fetches from the network:\n" + "\n".join(problems[:40])


@pytest.mark.docs
@needs_docs_extra
def test_mathjax_is_bundled_with_every_page_that_has_math(html_build):
    proc, html_dir = html_build
    pages = _math_pages(html_dir)
    assert len(pages) >= 5, f"expected math on several pages, found {[str(p) for p in pages]}"
    missing = []
    for page in pages:
        rel = page.relative_to(html_dir)
        srcs = _mathjax_scripts(page)
        if not srcs:
            missing.append(f"{rel}: has math but loads no MathJax script")
        for src in srcs:
            if _is_remote(src):
                missing.append(f"{rel}: MathJax from the network: {src}")
                continue
            target = (page.parent / unquote(urlsplit(src).path)).resolve()
            if not target.is_file() or html_dir.resolve() not in target.parents:
                missing.append(f"{rel}: MathJax script {src} is not in the build output")
            elif b"MathJax" not in target.read_bytes()[:200_000]:
                missing.append(f"{rel}: {src} is not MathJax")
    assert not missing, "\n".join(missing[:40])


# ----------------------------------------------------------------------------- every formula
_INLINE = re.compile(r'<span class="math notranslate nohighlight">\\\((.*?)\\\)</span>', re.S)
_DISPLAY = re.compile(r'<div class="math notranslate nohighlight"[^>]*>(?:\s*<span class="eqno">.*?</span>)?'
                      r'\s*\\\[(.*?)\\\]\s*</div>', re.S)

#: Typesets formulas (JSON on stdin: config, [[tex, display], ...]) with the MathJax copy of the
#: site in Node, with undefined macros and TeX errors raised rather than drawn in red.
_NODE_SCRIPT = r"""
const dir = process.argv[1];
const input = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const tex = Object.assign({}, input.tex, {
  packages: {'[-]': ['noundefined', 'noerrors', 'autoload', 'require']},
  formatError: (jax, err) => { throw err; },
});
require(dir + '/node-main.js').init({
  loader: {paths: {mathjax: dir}, load: ['input/tex-full', 'output/svg', 'adaptors/liteDOM']},
  tex: tex, startup: {typeset: false},
}).then((MathJax) => {
  const errors = [];
  for (const [src, display] of input.formulas) {
    try { MathJax.tex2svg(src, {display: display}); } catch (e) { errors.push([src, String(e.message || e)]); }
  }
  process.stdout.write('\n' + JSON.stringify(errors) + '\n');
}).catch((e) => { console.error(e); process.exit(2); });
"""


def _page_mathjax_config(page: Path) -> dict:
    m = re.search(r"window\.MathJax = (\{.*?\})\s*</script>", page.read_text(errors="replace"), re.S)
    return json.loads(m.group(1)) if m else {}


@pytest.mark.docs
@needs_docs_extra
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run MathJax outside a browser")
def test_every_formula_of_the_site_typesets(html_build):
    """Every formula on every page (docstrings included) typesets with the bundled MathJax and
    the site's MathJax configuration: no TeX error, no undefined macro."""
    proc, html_dir = html_build
    pages = _math_pages(html_dir)
    assert pages, proc.stderr[-5000:]
    formulas = {}
    for page in pages:
        text = page.read_text(errors="replace")
        for m in _INLINE.finditer(text):
            formulas.setdefault((html.unescape(m.group(1)), False), page.relative_to(html_dir))
        for m in _DISPLAY.finditer(text):
            formulas.setdefault((html.unescape(m.group(1)).strip(), True), page.relative_to(html_dir))
        n_math = len(re.findall(r'class="math notranslate', text))
        n_found = len(_INLINE.findall(text)) + len(_DISPLAY.findall(text))
        assert n_found == n_math, f"{page.relative_to(html_dir)}: {n_math} formulas, {n_found} parsed"
    srcs = _mathjax_scripts(pages[0])
    assert srcs and not _is_remote(srcs[0])
    mathjax_dir = (pages[0].parent / unquote(urlsplit(srcs[0]).path)).resolve().parent
    config = _page_mathjax_config(pages[0])
    payload = {"tex": config.get("tex", {}), "formulas": [[s, d] for s, d in formulas]}
    node = subprocess.run(["node", "-e", _NODE_SCRIPT, str(mathjax_dir)], input=json.dumps(payload),
                          capture_output=True, text=True, timeout=300)
    assert node.returncode == 0, node.stderr[-3000:]
    errors = json.loads(node.stdout.strip().splitlines()[-1])
    where = {s: page for (s, _), page in formulas.items()}
    report = [f"{where.get(s, '?')}: {e}: {s[:120]!r}" for s, e in errors]
    assert not errors, f"{len(errors)} of {len(formulas)} formulas fail:\n" + "\n".join(report[:40])
