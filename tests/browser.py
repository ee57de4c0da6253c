"""Helpers for the browser tests: a local server on a free port, and headless Chromium that records every request
to another host (the pages must work offline: nothing may leave the machine)."""
import os
import shutil
import socket
import subprocess
import time
from contextlib import contextmanager
from urllib.parse import urlparse

import pytest

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
# as the machine's own probe starts it: without the background-networking flags Chromium dials Google's hosts itself
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
                 '--disable-component-update', '--disable-sync']
LOCAL_HOSTS = {'127.0.0.1', 'localhost', '::1', ''}

needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get('IMAGIC_REQUIRE_BROWSER'),
                                   reason='Chromium is not installed (CI installs it and sets IMAGIC_REQUIRE_BROWSER=1)')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@contextmanager
def serving(cmd, port, cwd, timeout=90, env=None):
    "Run a server command until its port answers; stop it afterwards. Its output goes to `cwd/server.log`."
    log = open(os.path.join(cwd, 'server.log'), 'wb')
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if proc.poll() is not None: pytest.fail(f'{cmd[2]} exited with {proc.returncode}: see {log.name}')
            try:
                socket.create_connection(('127.0.0.1', port), timeout=1).close(); break
            except OSError: time.sleep(0.5)
        else: pytest.fail(f'{cmd[2]} did not start within {timeout} s')
        yield proc
    finally:
        proc.terminate()
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: proc.kill()
        log.close()


@contextmanager
def offline_page():
    "A Chromium page whose requests to any other host are recorded (in `page.external`) and refused."
    assert CHROMIUM, 'IMAGIC_REQUIRE_BROWSER is set but Chromium is missing'
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.external = []
        def route(r):
            url = r.request.url
            if urlparse(url).scheme in ('http', 'https', 'ws', 'wss') and urlparse(url).hostname not in LOCAL_HOSTS:
                page.external.append(url); r.abort()
            else: r.continue_()
        page.route('**/*', route)
        try: yield page
        finally: browser.close()
