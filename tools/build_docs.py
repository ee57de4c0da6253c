"""Build imagic's documentation site into `_docs/`, offline, from the notebooks as they are in the repository.

    python tools/build_docs.py                 # writes _docs/ (about half a minute on a 2-core CPU)
    python -m http.server -d _docs 8000        # then open http://127.0.0.1:8000/

Why this way: nbdev builds its site with Quarto, which cannot be installed from a package registry (the `quarto-cli`
package downloads the binary at install time). nbdev's own preprocessing needs no Quarto: `nbdev.serve_drv` (what
`nbdev_proc_nbs` runs) turns every notebook into the notebook Quarto would render — directives applied, hidden cells
dropped, a `show_doc` added and run for every exported function, which writes its signature and docments table as
Markdown. This script runs that processing (import, export and `show_doc` cells only: no slow cell, no training), turns
each processed notebook into Markdown with nbconvert (the tutorials' stored figures become image files), links every
`` `name` `` of imagic to its page as nbdev does, and renders the pages with MkDocs and the Material theme: both
maintained, on PyPI, pure Python, with a client-side search index and no CDN (the theme's web fonts are switched off;
its icons are inline SVG). A user with Quarto can still run `nbdev_docs`: settings.ini keeps nbdev's fields.

A notebook that fails to parse or to process is named and the build exits 1; a link to a page that does not exist fails
MkDocs' strict mode. The site is built in a temporary folder and moved into `_docs/` only when whole.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NBS = ROOT / 'nbs'
TUTORIALS = sorted((NBS / 'tutorials').glob('*.ipynb'))
LIBRARY = [NBS / '00_basics.ipynb'] + sorted(p for p in NBS.glob('*.ipynb') if p.name != 'index.ipynb' and not p.name.startswith('00_')) + \
          [NBS / '00_testing.ipynb']  # the basics, the chapters from 01_core on, the testing helpers last
FAMILIES = sorted((NBS / 'families').glob('*.ipynb'), key=lambda p: (p.name != 'index.ipynb', p.name))
WORLD = sorted((NBS / 'world').glob('*.ipynb'), key=lambda p: (p.name != 'index.ipynb', p.name))
SECTIONS = [('Tutorials', TUTORIALS), ('Library', LIBRARY), ('Model families', FAMILIES), ('The bundled world', WORLD)]


class DocsError(Exception):
    "A notebook or page the site cannot be built from: reported in one line, exit status 1."


def page_of(nb:Path) -> str:
    "The site page (relative to the docs folder) a notebook becomes: nbs/tutorials/01_x.ipynb -> tutorials/01_x.md."
    return nb.relative_to(NBS).with_suffix('.md').as_posix()


def _process(args):
    "nbdev's processing of one notebook (what `nbdev_proc_nbs` does to it), in a fresh process: (source, error or None)."
    src, dst = args
    try:
        os.chdir(NBS / Path(src).relative_to(NBS).parent)  # as nbdev runs it: relative paths in cells resolve as in Jupyter
        from nbdev.processors import FilterDefaults
        from nbdev import serve_drv
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
        serve_drv.main((Path(src), Path(dst), FilterDefaults))
        return src, None
    except BaseException as e:  # the notebook's name and the first line of what went wrong (a cell may even exit)
        msg = str(e).strip().splitlines()
        return src, f"{type(e).__name__}: {msg[0] if msg else ''}"


def process_all(notebooks, out:Path, workers:int) -> None:
    for nb in notebooks:  # parse first: a broken notebook is named before anything runs
        try: json.loads(nb.read_text(encoding='utf-8'))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DocsError(f"{nb.relative_to(ROOT)} is not a readable notebook: {e}") from None
    jobs = [(str(nb), str(out / nb.relative_to(NBS))) for nb in notebooks]
    import multiprocessing as mp
    sys.path.insert(0, str(Path(__file__).parent))
    import build_docs  # the workers find `_process` by this module's name (a script's `__main__` is not theirs)
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context('spawn')) as ex:
        failed = [(s, err) for s, err in ex.map(build_docs._process, jobs) if err]
    if failed:
        raise DocsError('; '.join(f"{Path(s).relative_to(ROOT)} could not be processed: {err}" for s, err in failed))


# ------------------------------------------------------------------ cross-links
def symbol_pages(notebooks) -> dict:
    "Every documented name of imagic ('Imagic', 'Imagic.fit', 'fit_stages') -> (page, anchor), from nbdev's index of the package."
    from markdown.extensions.toc import slugify
    from imagic._modidx import d
    module_page = {}
    for nb in notebooks:
        m = re.search(r'#\|\s*default_exp\s+(\S+)', nb.read_text(encoding='utf-8'))
        if m: module_page[f"imagic.{m.group(1)}"] = page_of(nb)
    out = {}
    for module, syms in d['syms'].items():
        if module not in module_page: continue
        for full in syms:
            name = full[len(module) + 1:]
            if not name or any(part.startswith('_') for part in name.split('.')): continue
            out.setdefault(name, (module_page[module], slugify(name, '-')))
    return out


_CODE_SPAN = re.compile(r'(?<![\[`])`([A-Za-z_][\w.]*?)(?:\(\))?`(?![\]`(])')
_NB_PATH = re.compile(r'`(nbs/[\w/.-]+\.ipynb)`')
_MD_LINK = re.compile(r'\]\((?!https?:|#|mailto:)([^)#\s]+\.ipynb)(#[^)]*)?\)')


def _rel(target:str, here:str) -> str:
    return os.path.relpath(target, os.path.dirname(here) or '.').replace(os.sep, '/')


def nbdev_pages(notebooks) -> dict:
    "nbdev's page name of each notebook ('core.html' for nbs/01_core.ipynb, 'world/scene.html') -> this site's page."
    return {re.sub(r'(^|/)\d+_', r'\1', nb.relative_to(NBS).with_suffix('.html').as_posix()): page_of(nb) for nb in notebooks}


def _doc_host() -> str:
    "Where settings.ini says nbdev's site lives: show_doc links its cross-references there."
    from configparser import ConfigParser
    cfg = ConfigParser(); cfg.read(ROOT / 'settings.ini')
    return cfg['DEFAULT'].get('doc_host', '').rstrip('/') + '/' + cfg['DEFAULT'].get('doc_baseurl', '').strip('/') + '/'


def local_links(md:str, here:str, nbdev:dict) -> str:
    "show_doc's links into nbdev's site (doc_host) turned into links to this site's pages."
    from markdown.extensions.toc import slugify
    def sub(m):
        page = nbdev.get(m.group(1))
        if page is None: raise DocsError(f"{here}: a link to {m.group(0)} names no page of the site")
        return _rel(page, here) + ('#' + slugify(m.group(2), '-') if m.group(2) else '')
    return re.sub(re.escape(_doc_host()) + r'([\w/.-]+\.html)(?:#([\w.-]+))?', sub, md)


def link_text(md:str, here:str, symbols:dict, pages:set, src_dir:Path) -> str:
    "Markdown with `name`s of imagic linked to their pages, notebook paths (`nbs/….ipynb`, links to .ipynb files) to theirs; outside fenced code."
    def sym(m):
        page, anchor = symbols[m.group(1)]
        return f"[`{m.group(1)}`]({_rel(page, here)}#{anchor})"
    def nb_path(m):
        page = Path(m.group(1)).relative_to('nbs').with_suffix('.md').as_posix()
        if page not in pages: raise DocsError(f"{here}: `{m.group(1)}` names no notebook of the site")
        return f"[`{m.group(1)}`]({_rel(page, here)})"
    def nb_link(m):
        target = (src_dir / m.group(1)).resolve()
        try: page = target.relative_to(NBS).with_suffix('.md').as_posix()
        except ValueError: page = None
        if page not in pages: raise DocsError(f"{here}: the link to {m.group(1)} names no notebook of the site")
        return f"]({_rel(page, here)}{m.group(2) or ''})"
    out, fenced = [], False
    for chunk in re.split(r'(^```.*$)', md, flags=re.M):
        if chunk.startswith('```'): fenced = not fenced; out.append(chunk); continue
        if fenced: out.append(chunk); continue
        chunk = _NB_PATH.sub(nb_path, chunk)
        chunk = _MD_LINK.sub(nb_link, chunk)
        chunk = _CODE_SPAN.sub(lambda m: sym(m) if m.group(1) in symbols else m.group(0), chunk)
        out.append(chunk)
    return ''.join(out)


# ------------------------------------------------------------------ notebooks to Markdown
def _clean(nb:dict) -> dict:
    "Quarto's leftovers out: the front-matter cell, directive comments; cells Quarto would not echo keep only their outputs."
    cells = []
    for c in nb.cells:
        if c.cell_type == 'raw': continue
        if c.cell_type == 'markdown' and c.source.strip().startswith('<!-- WARNING: THIS FILE WAS AUTOGENERATED'): continue
        if c.cell_type == 'code':
            lines = c.source.split('\n')
            echo = not any(re.match(r'#\|\s*echo:\s*false', l) for l in lines)
            c.source = '\n'.join(l for l in lines if not l.startswith('#|')).strip('\n')
            if not echo or not c.source: c.metadata['tags'] = c.metadata.get('tags', []) + ['remove_input']
            if (not echo or not c.source) and not c.get('outputs'): continue
            for o in c.get('outputs', []):  # show_doc's source link uses Quarto's attribute syntax
                if 'data' in o and 'text/markdown' in o.data:
                    o.data['text/markdown'] = re.sub(r'\)\{target="_blank"[^}]*\}', ')', o.data['text/markdown'])
        cells.append(c)
    nb.cells = cells
    return nb


def to_markdown(proc:Path, page:str, docs:Path, symbols:dict, pages:set, src:Path, nbdev:dict) -> str:
    "Write the processed notebook `proc` as the page `page` (its figures beside it); returns its title, for the sidebar."
    import nbformat
    from nbconvert import MarkdownExporter
    nb = nbformat.read(proc, as_version=4)
    fm = _front(nb)
    front = str(fm.get('title') or proc.stem)
    nb = _clean(nb)
    title = next((c.source.split('\n')[0].lstrip('# ').strip() for c in nb.cells if c.cell_type == 'markdown'
                  and c.source.startswith('# ')), None)
    for c in nb.cells:
        if c.cell_type == 'markdown': c.source = local_links(link_text(c.source, page, symbols, pages, src.parent), page, nbdev)
        for o in c.get('outputs', []):
            if 'data' in o and 'text/markdown' in o.data:
                o.data['text/markdown'] = local_links(link_text(o.data['text/markdown'], page, symbols, pages, src.parent), page, nbdev)
    files = Path(page).stem + '_files'
    from traitlets.config import Config
    cfg = Config(); cfg.TagRemovePreprocessor.remove_input_tags = {'remove_input'}; cfg.TagRemovePreprocessor.enabled = True
    body, res = MarkdownExporter(config=cfg).from_notebook_node(nb, resources={'output_files_dir': files})
    head = '' if title else f"# {front}\n\n"
    desc = fm.get('description')
    if desc and not title: head += f"> {desc}\n\n"
    target = docs / page
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(head + body, encoding='utf-8')
    for name, data in res.get('outputs', {}).items():
        (target.parent / name).parent.mkdir(parents=True, exist_ok=True)
        (target.parent / name).write_bytes(data)
    return front.replace('`', '')  # the sidebar shows plain text


def _front(nb) -> dict:
    "The front matter nbdev moved the notebook's title and one-line summary into (a YAML raw cell)."
    import yaml
    raw = next((c.source for c in nb.cells if c.cell_type == 'raw'), '').strip()
    if not raw.startswith('---'): return {}
    try: return yaml.safe_load(raw.strip('-').strip()) or {}
    except yaml.YAMLError: return {}


def build(out:Path, workers:int=2) -> Path:
    notebooks = [nb for _, nbs in SECTIONS for nb in nbs]
    work = Path(tempfile.mkdtemp(prefix='imagic-docs-'))
    try:
        proc = work / 'proc'
        process_all(notebooks, proc, workers)
        docs = work / 'docs'; docs.mkdir()
        pages = {page_of(nb) for nb in notebooks} | {'index.md'}
        symbols = symbol_pages(notebooks)
        nbdev = nbdev_pages(notebooks)
        titles = {nb: to_markdown(proc / nb.relative_to(NBS), page_of(nb), docs, symbols, pages, nb, nbdev) for nb in notebooks}
        home = (ROOT / 'README.md').read_text(encoding='utf-8')
        (docs / 'index.md').write_text(link_text(home, 'index.md', symbols, pages, ROOT), encoding='utf-8')
        nav = [{'Home': 'index.md'}] + [{name: [{titles[nb]: page_of(nb)} for nb in nbs]} for name, nbs in SECTIONS]
        cfg = dict(site_name='imagic', site_description='Imagic (Kawar et al., CVPR 2023) as a notebook-first library',
                   docs_dir=str(docs), site_dir=str(work / 'site'), use_directory_urls=False, strict=True, nav=nav,
                   theme=dict(name='material', font=False, features=['navigation.sections', 'navigation.indexes',
                                                                    'search.highlight', 'content.code.copy']),
                   plugins=['search'], markdown_extensions=['tables', 'attr_list', 'md_in_html', 'admonition',
                                                           dict(toc=dict(permalink=True))],
                   validation=dict(omitted_files='warn', absolute_links='warn', unrecognized_links='warn', anchors='warn'))
        (work / 'mkdocs.yml').write_text(json.dumps(cfg, indent=1))  # JSON is YAML
        r = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '-q', '-f', str(work / 'mkdocs.yml')],
                           capture_output=True, text=True)
        if r.returncode:
            lines = [l for l in (r.stderr + r.stdout).splitlines() if 'WARNING' in l or 'ERROR' in l or 'Error' in l]
            raise DocsError('mkdocs: ' + ('; '.join(lines[:5]) or (r.stderr + r.stdout).strip()[-500:]))
        _check_offline(work / 'site')
        if out.exists(): shutil.rmtree(out)
        shutil.move(str(work / 'site'), str(out))
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_offline(site:Path) -> None:
    "No page may load a script, style sheet, font or image from another host."
    bad = re.compile(r'''<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)=["']((?:https?:)?//[^"']+)''', re.I)
    for page in site.rglob('*.html'):
        for m in bad.finditer(page.read_text(encoding='utf-8', errors='replace')):
            tag = m.group(0)
            if tag.lower().startswith('<link') and not re.search(r'rel=["\']?(stylesheet|preload|icon|preconnect)', tag, re.I): continue
            raise DocsError(f"{page.relative_to(site)} loads {m.group(1)} from the network")


def main(argv=None):
    import warnings
    warnings.filterwarnings('ignore', module='nbformat'); warnings.filterwarnings('ignore', module='nbconvert')
    warnings.filterwarnings('ignore', message='.*not able to be represented.*')
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split('\n\n', 1)[1].split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--out', default=str(ROOT / '_docs'), help='where the site goes (default: _docs/)')
    ap.add_argument('--workers', type=int, default=2, help='processes processing notebooks (default 2)')
    args = ap.parse_args(argv)
    try: out = build(Path(args.out), args.workers)
    except DocsError as e:
        print(f"build_docs: error: {e}", file=sys.stderr); return 1
    print(f"site written to {out} ({sum(1 for _ in out.rglob('*.html'))} pages); serve it with: python -m http.server -d {out} 8000")
    return 0


if __name__ == '__main__':
    sys.exit(main())
