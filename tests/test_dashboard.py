"""The η dashboard: driven headless from Python, and as a person would, in a real browser through Voilà."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

import imagic
from imagic.dashboard import Dashboard


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


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get('IMAGIC_REQUIRE_BROWSER'),
                    reason='Chromium is not installed (CI installs it and sets IMAGIC_REQUIRE_BROWSER=1)')
def test_voila_dashboard_in_a_browser(tiny_path, state_path, tmp_path):
    assert CHROMIUM, 'IMAGIC_REQUIRE_BROWSER is set but Chromium is missing'
    from playwright.sync_api import sync_playwright
    code = (f"import imagic\nfrom imagic.dashboard import Dashboard\n"
            f"pipe = imagic.load_pipeline({str(tiny_path)!r}, device='cpu')\nDashboard({str(state_path)!r}, pipe=pipe)")
    nb = {'cells': [{'cell_type': 'code', 'execution_count': None, 'metadata': {}, 'outputs': [], 'source': code}],
          'metadata': {'kernelspec': {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}},
          'nbformat': 4, 'nbformat_minor': 5}
    (tmp_path / 'dash.ipynb').write_text(json.dumps(nb))
    port = _free_port()
    voila = subprocess.Popen([sys.executable, '-m', 'voila', 'dash.ipynb', '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1'],
                             cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close(); break
            except OSError: time.sleep(0.5)
        else: pytest.fail('Voilà did not start')
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=[
                '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                '--disable-component-update', '--disable-sync'])
            page = browser.new_page()
            page.goto(f'http://127.0.0.1:{port}/', timeout=120_000)
            page.wait_for_selector('.widget-readout', timeout=120_000)  # the widgets have rendered
            images = page.locator('img')
            page.wait_for_function("document.querySelectorAll('img').length >= 2 && [...document.querySelectorAll('img')].every(i => i.src)", timeout=60_000)
            edit = images.nth(1)
            before = edit.screenshot(path=str(tmp_path / 'before.png'))
            src_before = edit.get_attribute('src')
            readout = page.locator('.widget-readout').first  # the η slider comes first
            readout.click(); page.keyboard.press('Control+A'); page.keyboard.type('1'); page.keyboard.press('Enter')
            page.wait_for_function(f"document.querySelectorAll('img')[1].src !== {json.dumps(src_before)}", timeout=60_000)
            after = edit.screenshot(path=str(tmp_path / 'after.png'))
            browser.close()
        assert before != after, 'moving the η slider did not change the edited image'
    finally:
        voila.terminate(); voila.wait(timeout=20)
