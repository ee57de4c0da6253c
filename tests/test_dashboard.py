"""The η dashboard: driven headless from Python, and as a person would, in a real browser through Voilà."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import imagic
from imagic.dashboard import Dashboard, voila_command

from browser import free_port, needs_browser, offline_page, serving


@pytest.fixture(scope='module')
def state_path(pipe, tmp_path_factory):
    ed = imagic.Imagic(pipe, embed_steps=2, finetune_steps=2, sample_steps=3, etas=(0.6,), seeds=(0,))
    ed.fit(Image.new('RGB', (32, 32), (200, 30, 30)), 'a blue circle on a white background', progress=False)
    return ed.save(tmp_path_factory.mktemp('dash') / 'state.safetensors')


def test_headless_controls_cache_and_grid(pipe, state_path):
    dash = Dashboard(state_path, pipe=pipe, grid_etas=(0.2, 0.6, 1.0), grid_seeds=(0, 5))
    shown = dash.edit_img.value
    dash.seed.value = 5
    assert dash.edit_img.value != shown and dash.misses == 2
    dash.seed.value = 0
    assert dash.edit_img.value == shown and dash.misses == 2 and dash.hits == 1  # back: served from the cache
    dash.steps.value = 10
    assert dash.edit_img.value != shown and dash.misses == 3  # another setting: regenerated
    before = dash.misses
    dash.fill_grid()
    assert dash.misses == before + 1 and len(dash.grid_figure.axes) == 6  # the grid: one batched call
    dash.fill_grid()
    assert dash.misses == before + 1  # and then entirely from the cache
    assert dash.progress.value == dash.progress.max > 0


@needs_browser
def test_voila_dashboard_in_a_browser(tiny_path, state_path, tmp_path):
    code = (f"import imagic\nfrom imagic.dashboard import Dashboard\n"
            f"pipe = imagic.load_pipeline({str(tiny_path)!r}, device='cpu')\nDashboard({str(state_path)!r}, pipe=pipe)")
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': code}],
          'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path / 'dash.ipynb').write_text(json.dumps(nb))
    port = free_port()
    cmd, env = voila_command('dash.ipynb', port=port)  # what `python -m imagic.dashboard` runs
    with serving(cmd, port, tmp_path, env=env), offline_page() as page:
        page.goto(f'http://127.0.0.1:{port}/', timeout=120_000)
        page.wait_for_selector('.widget-readout', timeout=120_000)  # the widgets have rendered
        images = page.locator('img')
        page.wait_for_function("document.querySelectorAll('img').length >= 2 && [...document.querySelectorAll('img')].every(i => i.src)", timeout=60_000)
        edit = images.nth(1)
        before = edit.screenshot(path=str(tmp_path / 'before.png'))
        src_before = edit.get_attribute('src')
        button = page.locator('button.jupyter-button').first
        assert button.inner_text().strip(), 'the grid button shows no words'
        readout = page.locator('.widget-readout').first  # the η slider comes first
        readout.click(); page.keyboard.press('Control+A'); page.keyboard.type('1'); page.keyboard.press('Enter')
        page.wait_for_function(f"document.querySelectorAll('img')[1].src !== {json.dumps(src_before)}", timeout=60_000)
        after = edit.screenshot(path=str(tmp_path / 'after.png'))
        external = list(page.external)
    assert before != after, 'moving the η slider did not change the edited image'
    assert not external, f'the dashboard asked other hosts for: {external}'


def test_serving_a_missing_notebook_says_so(tmp_path):
    r = subprocess.run([sys.executable, '-m', 'imagic.dashboard', str(tmp_path / 'nope.ipynb'), '--no-browser'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and 'no notebook at' in r.stderr and 'Traceback' not in r.stderr


TUTORIALS = Path(__file__).resolve().parents[1] / 'nbs' / 'tutorials'


@needs_browser
def test_jupyterlab_opens_tutorial_01(tmp_path):
    "The README's command for the tutorials: JupyterLab opens tutorial 01, its title and first figure rendered, offline."
    root = tmp_path / 'tutorials'  # a copy: JupyterLab may autosave what it opens
    shutil.copytree(TUTORIALS, root)
    port = free_port()
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp_path / 'config'), 'JUPYTER_DATA_DIR': str(tmp_path / 'data'),
           'JUPYTERLAB_WORKSPACES_DIR': str(tmp_path / 'workspaces'), 'JUPYTERLAB_SETTINGS_DIR': str(tmp_path / 'settings')}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', f'--port={port}', '--ServerApp.ip=127.0.0.1',
           '--IdentityProvider.token=', '--ServerApp.password=', f'--ServerApp.root_dir={root}',
           '--LabApp.news_url=', '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate',
           '--LabApp.extension_manager=readonly'] + (['--allow-root'] if os.geteuid() == 0 else [])  # CI runs as root
    with serving(cmd, port, tmp_path, env=env), offline_page() as page:
        page.goto(f'http://127.0.0.1:{port}/lab/tree/01_imagic_step_by_step.ipynb', timeout=120_000)
        title = page.locator('.jp-RenderedMarkdown h1').first
        title.wait_for(timeout=120_000)
        text = title.inner_text()
        figure = page.locator('.jp-OutputArea-output img').first
        figure.wait_for(timeout=60_000)
        page.wait_for_function("(() => { const i = document.querySelector('.jp-OutputArea-output img');"
                               " return i && i.complete && i.naturalWidth > 100; })()", timeout=60_000)
        size = page.evaluate("(() => { const i = document.querySelector('.jp-OutputArea-output img'); return [i.naturalWidth, i.naturalHeight]; })()")
        page.screenshot(path=str(tmp_path / 'lab.png'))
        external = list(page.external)
    assert not external, f'JupyterLab asked other hosts for: {external}'
    assert 'Imagic, step by step' in text, text
    assert min(size) > 100, size


def test_tutorial_03_serves_as_written():
    "Voilà runs every code cell: the dashboard tutorial may hold no cell meant to be skipped (a GPU alternative)."
    nb = json.loads((TUTORIALS / '03_dashboard.ipynb').read_text())
    skipped = [c['source'] for c in nb['cells'] if c['cell_type'] == 'code' and 'eval: false' in ''.join(c['source'])]
    assert not skipped, skipped
