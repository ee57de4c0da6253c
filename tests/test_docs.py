"""The documentation site (`python tools/build_docs.py`), as a reader meets it in a real browser, offline: the home page
and every tutorial load with their figures decoded, `Imagic.fit` has a page with its parameters, the search finds
`interpolate`, and no request leaves the machine. The build itself: a notebook that cannot be parsed is named, exit 1,
and `_docs/` is left as it was."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from browser import free_port, needs_browser, offline_page, serving

ROOT = Path(__file__).resolve().parent.parent
BUILD = [sys.executable, str(ROOT / 'tools' / 'build_docs.py')]
TUTORIALS = sorted(p.stem for p in (ROOT / 'nbs' / 'tutorials').glob('*.ipynb'))


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    "The site as the README's command builds it: CI's build (`$IMAGIC_DOCS_SITE`, made by .ci/run), else one of the test's own."
    if os.environ.get('IMAGIC_DOCS_SITE') and (Path(os.environ['IMAGIC_DOCS_SITE']) / 'index.html').exists():
        return Path(os.environ['IMAGIC_DOCS_SITE']).resolve()
    out = tmp_path_factory.mktemp('site') / '_docs'
    r = subprocess.run(BUILD + ['--out', str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_every_chapter_has_a_page(site):
    pages = {p.relative_to(site).as_posix() for p in site.rglob('*.html')}
    nbs = ROOT / 'nbs'
    wanted = {p.relative_to(nbs).with_suffix('.html').as_posix() for p in nbs.rglob('*.ipynb')
              if p.name != 'index.ipynb' or p.parent != nbs}
    assert wanted <= pages, sorted(wanted - pages)
    assert 'index.html' in pages and (site / 'search' / 'search_index.json').exists()


@needs_browser
def test_the_site_in_a_browser_offline(site, tmp_path):
    port = free_port()
    with serving([sys.executable, '-m', 'http.server', str(port), '--bind', '127.0.0.1', '-d', str(site)], port, tmp_path), \
            offline_page() as page:
        base = f'http://127.0.0.1:{port}'
        page.goto(f'{base}/index.html')
        assert 'imagic' in page.title() and page.locator('h1').first.inner_text().strip().rstrip('¶') == 'imagic'
        nav = page.locator('nav.md-nav--primary').first.inner_text()
        assert 'Tutorials' in nav and 'Library' in nav
        for name in TUTORIALS:
            page.goto(f'{base}/tutorials/{name}.html')
            page.wait_for_load_state('load')
            imgs = page.locator('article img')
            n = imgs.count()
            if name != '03_dashboard':  # the dashboard's figures are live widgets; the others keep theirs
                assert n >= 1, f'{name}: no figure on the page'
            broken = page.evaluate("[...document.querySelectorAll('article img')].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            assert not broken, f'{name}: figures not shown: {broken}'
        page.goto(f'{base}/03_state.html')
        fit = page.locator('h3#imagicfit')
        assert fit.count() == 1, 'no section for Imagic.fit'
        section = page.evaluate("""() => { const h = document.querySelector('h3#imagicfit'); let t = '', e = h.nextElementSibling;
            while (e && e.tagName !== 'H3') { t += e.innerText + '\\n'; e = e.nextElementSibling; } return t; }""")
        for param in ('image', 'text', 'progress', 'checkpoint_dir'):
            assert param in section, f'Imagic.fit: parameter {param} not shown'
        # a cross-link, as nbdev makes them: `Imagic` in the tutorials' prose goes to its page
        page.goto(f'{base}/tutorials/01_imagic_step_by_step.html')
        assert page.locator('article a[href$="03_state.html#imagic"]').count() >= 1
        # the search, typed as a reader types it
        page.goto(f'{base}/index.html')
        page.locator('label.md-search__icon, .md-search__input').first.click()
        page.locator('input.md-search__input').fill('interpolate')
        page.wait_for_selector('.md-search-result__item', timeout=30_000)
        hits = page.locator('.md-search-result__item').all_inner_texts()
        assert any('interpolate' in h for h in hits), hits[:5]
        external = list(page.external)
    assert not external, f'the site asked other hosts for: {external}'


def test_a_broken_notebook_is_named_and_nothing_half_written(tmp_path):
    "A copy of the repository's build inputs with one notebook cut short: the build names it, exits 1, and leaves `--out` as it was."
    work = tmp_path / 'repo'
    for part in ('nbs', 'tools', 'settings.ini', 'README.md'):
        src = ROOT / part
        (shutil.copytree(src, work / part, ignore=shutil.ignore_patterns('*.jsonl', '_proc')) if src.is_dir()
         else shutil.copy(src, work / part))
    nb = work / 'nbs' / 'tutorials' / '02_tradeoff.ipynb'
    nb.write_text(nb.read_text()[:500])
    out = tmp_path / 'site'; out.mkdir(); (out / 'keep.html').write_text('old site')
    r = subprocess.run([sys.executable, str(work / 'tools' / 'build_docs.py'), '--out', str(out)], capture_output=True,
                       text=True, timeout=300, cwd=work)
    assert r.returncode == 1, r.stderr[-2000:]
    assert 'nbs/tutorials/02_tradeoff.ipynb' in r.stderr and 'not a readable notebook' in r.stderr
    assert r.stderr.count('\n') == 1, r.stderr
    assert [p.name for p in out.iterdir()] == ['keep.html']
