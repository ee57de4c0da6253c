"""The `imagic` command line as a user meets it: help, edits, bad input (exit 2, one line, nothing written),
kill-and-resume of `edit --resume` and of `bench`, and `bench` sharded over two processes by accelerate."""
import contextlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from imagic.bench import read_dataset, write_world_dataset
from imagic.cli import main
from imagic.testing import save_tiny_model

QUICK = ['--embed-steps', '2', '--finetune-steps', '2', '--sample-steps', '2', '--eta', '0.7', '--seeds', '0', '-q']
BIN = Path(sys.executable).parent  # the console scripts installed beside this Python (imagic, accelerate)
ENV = {**os.environ, 'PATH': f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", 'HF_HUB_OFFLINE': '1', 'PYTHONUNBUFFERED': '1'}


def run(*argv):
    "In-process `imagic ...`: (exit status, stderr)."
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try: code = main([str(a) for a in argv])
        except SystemExit as e: code = e.code
    return code, err.getvalue()


def cli(*argv, **kw):
    "`python -m imagic ...` in a fresh process."
    return subprocess.run([sys.executable, '-m', 'imagic', *map(str, argv)], capture_output=True, text=True, env=ENV, **kw)


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp('img') / 'photo.png'
    img = Image.new('RGB', (40, 30), (240, 240, 240)); img.paste((200, 30, 30), (10, 8, 22, 20)); img.save(p)
    return p


@pytest.fixture(scope='module')
def other_tiny(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp('other') / 'tiny-other', seed=7)


@pytest.fixture(scope='module')
def fitted_state(tiny_path, photo, tmp_path_factory):
    out = tmp_path_factory.mktemp('fit')
    code, err = run('edit', photo, 'a blue square', '--out', out, '--model', tiny_path, *QUICK)
    assert code == 0, err
    return out / 'state.safetensors'


def test_help_reads_like_a_unix_tool():
    r = subprocess.run([str(BIN / 'imagic'), '--help'], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0 and 'edit' in r.stdout and 'bench' in r.stdout and 'examples:' in r.stdout
    assert 'Exit status' in r.stdout
    for sub in ('edit', 'bench'):
        r = subprocess.run([str(BIN / 'imagic'), sub, '--help'], capture_output=True, text=True, env=ENV)
        assert r.returncode == 0 and '--out' in r.stdout and '--model' in r.stdout and '--eta' in r.stdout
    assert subprocess.run([str(BIN / 'imagic'), '--version'], capture_output=True, text=True).stdout.startswith('imagic ')


def test_edit_writes_pngs_state_and_json(tiny_path, photo, tmp_path):
    code, err = run('edit', photo, 'a blue square', '--out', tmp_path, '--model', tiny_path, '--embed-steps', '2',
                    '--finetune-steps', '2', '--sample-steps', '2', '--eta', '0.6', '0.8', '--seeds', '1', '2', '-q')
    assert code == 0 and err == ''
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ['edit.json', 'eta0.60_seed1.png', 'eta0.60_seed2.png', 'eta0.80_seed1.png', 'eta0.80_seed2.png',
                     'state.safetensors']
    info = json.loads((tmp_path / 'edit.json').read_text())
    assert info['settings']['embed_steps'] == 2 and info['settings']['etas'] == [0.6, 0.8]
    assert info['timings']['fit_s'] > 0 and info['timings']['sample_s'] > 0
    assert Image.open(tmp_path / 'eta0.60_seed1.png').size == (32, 24)  # 4:3 input, model's 32 px on the long side


def test_load_state_costs_only_sampling(tiny_path, photo, fitted_state, tmp_path):
    code, err = run('edit', photo, 'a blue square', '--out', tmp_path, '--model', tiny_path, '--load-state',
                    fitted_state, '--eta', '0.9', '--seeds', '5', '--sample-steps', '2', '-q')
    assert code == 0, err
    info = json.loads((tmp_path / 'edit.json').read_text())
    assert 'fit_s' not in info['timings'] and (tmp_path / 'eta0.90_seed5.png').exists()
    assert not (tmp_path / 'state.safetensors').exists()  # the loaded state is not rewritten


def _bad_files(d: Path) -> dict:
    (d / 'text.png').write_text('not an image')
    buf = io.BytesIO(); Image.new('RGB', (64, 64), (1, 2, 3)).save(buf, 'PNG')
    (d / 'trunc.png').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    Image.new('RGB', (8, 40)).save(d / 'small.png')
    Image.new('1', (12000, 12000)).save(d / 'bomb.png')  # 144 M pixels: over PIL's decompression-bomb limit
    (d / 'pickled.safetensors').write_bytes(pickle.dumps({'e_opt': [1, 2]}))
    (d / 'evil.safetensors').write_bytes(b"cos\nsystem\n(S'touch " + str(d / 'pwned').encode() + b"'\ntR.")
    return d


@pytest.fixture(scope='module')
def bad(tmp_path_factory):
    return _bad_files(tmp_path_factory.mktemp('bad'))


BAD_EDITS = [  # (argv after 'edit' with {bad}/{photo}/{state}/{other} placeholders, expected words in the error)
    (['{bad}/missing.png', 'a cat'], 'no such image file'),
    (['{bad}/text.png', 'a cat'], 'not an image'),
    (['{bad}/trunc.png', 'a cat'], 'truncated or corrupt'),
    (['{bad}/bomb.png', 'a cat'], 'decompression bomb'),
    (['{bad}/small.png', 'a cat'], 'at least 16'),
    (['{photo}', 'a cat', '--model', '{bad}/no-such-model'], 'unknown model'),
    (['{photo}', 'a cat', '--model', 'nobody-xyz/no-such-model'], 'could not load model'),
    (['{photo}', 'a cat', '--model', 'shapes'], 'retired'),
    (['{photo}', 'a cat', '--model', '{tiny}', '--load-state', '{bad}/pickled.safetensors'], 'not an imagic state'),
    (['{photo}', 'a cat', '--model', '{tiny}', '--load-state', '{bad}/evil.safetensors'], 'not an imagic state'),
    (['{photo}', 'a blue square', '--model', '{other}', '--load-state', '{state}'], 'another model'),
    (['{bad}/other.png', 'a blue square', '--model', '{tiny}', '--load-state', '{state}'], 'different image'),
    (['{photo}', 'a cat', '--eta', 'nan'], 'finite'),
    (['{photo}', 'a cat', '--eta', 'inf'], 'finite'),
    (['{photo}', 'a cat', '--eta', 'abc'], 'must be a number'),
    (['{photo}', '   '], 'target text is empty'),
    (['{photo}', 'a cat', '--seeds', '-1'], 'integer >= 0'),
    # the recipes' fields, given as knobs: a wrong value, an unknown part, a wrong range
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'forget=everything'], "forget must be one of"),
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'finetune_parts=wings'], "finetune_parts must be one of"),
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'timestep_range=0.9,0.1'], "timestep_range must be two numbers"),
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'joint_steps=-3'], "joint_steps must be an integer >= 0"),
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'mix_weight=2'], "mix_weight must be a number in [0, 1]"),
    (['{photo}', 'a cat', '--model', '{tiny}', '--knob', 'late_eta=low'], "late_eta must be a number or None"),
]


@pytest.mark.parametrize('argv,expected', BAD_EDITS, ids=[e for _, e in BAD_EDITS])
def test_bad_edit_input_is_one_line_exit_2_nothing_written(argv, expected, bad, photo, tiny_path, other_tiny,
                                                           fitted_state, tmp_path):
    Image.new('RGB', (40, 30), (0, 0, 200)).save(bad / 'other.png')
    fill = dict(bad=bad, photo=photo, state=fitted_state, tiny=tiny_path, other=other_tiny)
    out = tmp_path / 'out'
    code, err = run('edit', *[a.format(**fill) for a in argv], '--out', out)
    assert code == 2, err
    assert expected in err and err.count('\n') == 1 and 'Traceback' not in err, err
    assert not out.exists()
    assert not (bad / 'pwned').exists()  # the "state" was never unpickled


def test_wrong_shape_state_is_refused(tiny_path, photo, fitted_state, tmp_path):
    from imagic.state import ImagicState
    st = ImagicState.load(fitted_state)
    st.e_opt = st.e_opt[..., :16]; st.e_tgt = st.e_tgt[..., :16]  # as if from a narrower text encoder
    st.save(tmp_path / 'narrow.safetensors')
    code, err = run('edit', photo, 'a blue square', '--out', tmp_path / 'o', '--model', tiny_path,
                    '--load-state', tmp_path / 'narrow.safetensors')
    assert code == 2 and ('another model' in err or 'do not fit' in err) and err.count('\n') == 1, err


def test_bad_bench_input(tmp_path, bad):
    (tmp_path / 'empty').mkdir()
    code, err = run('bench', tmp_path / 'empty', '--out', tmp_path / 'o')
    assert code == 2 and 'no input_list.json' in err and err.count('\n') == 1
    (tmp_path / 'empty' / 'input_list.json').write_text(json.dumps([{'img_name': 'x.png', 'target_text': 'a dog'}]))
    code, err = run('bench', tmp_path / 'empty', '--out', tmp_path / 'o')
    assert code == 2 and 'x.png' in err and err.count('\n') == 1
    assert not (tmp_path / 'o').exists()


@pytest.mark.parametrize('kind', ['L', 'RGBA', 'P', 'CMYK', 'I;16', 'exif', 'odd', 'tall', 'long-text', 'unicode'])
def test_accepted_inputs(kind, tiny_path, tmp_path):
    base = Image.new('RGB', (45, 37), (30, 160, 60))
    text = 'a green square'
    if kind == 'I;16': img = Image.fromarray(np.full((37, 45), 30000, dtype=np.uint16))
    elif kind in ('L', 'RGBA', 'P', 'CMYK'): img = base.convert(kind)
    elif kind == 'tall': img = Image.new('RGB', (20, 70), (30, 160, 60))
    else: img = base
    path = tmp_path / ('in.jpg' if kind in ('CMYK', 'exif') else 'in.png')
    if kind == 'exif':
        exif = Image.Exif(); exif[0x0112] = 6; img.save(path, exif=exif.tobytes())
    else: img.save(path)
    if kind == 'long-text': text = 'a green square ' * 40
    if kind == 'unicode': text = 'un carré vert — 緑の四角'
    if kind == 'long-text':
        with pytest.warns(UserWarning, match='truncated'):
            code, err = run('edit', path, text, '--out', tmp_path / 'o', '--model', tiny_path, *QUICK)
    else: code, err = run('edit', path, text, '--out', tmp_path / 'o', '--model', tiny_path, *QUICK)
    assert code == 0, err
    out = Image.open(tmp_path / 'o' / 'eta0.70_seed0.png')
    w, h = Image.open(path).size if kind != 'exif' else (37, 45)
    assert abs(out.size[0] / out.size[1] - w / h) < 0.1  # the input's aspect ratio


def _wait_for(pred, proc, timeout=120):
    t0 = time.time()
    while not pred():
        assert proc.poll() is None, proc.communicate()
        assert time.time() - t0 < timeout, 'timed out'
        time.sleep(0.05)


def test_edit_killed_then_resumed_ends_as_an_uninterrupted_run(tiny_path, photo, tmp_path):
    steps = ['--embed-steps', '30', '--finetune-steps', '300', '--embed-lr', '0.01', '--finetune-lr', '1e-4',
             '--checkpoint-every', '10', '--sample-steps', '2', '--eta', '0.7', '--seeds', '0', '-q']
    ref = cli('edit', photo, 'a blue square', '--out', tmp_path / 'ref', '--model', tiny_path, *steps)
    assert ref.returncode == 0, ref.stderr
    out = tmp_path / 'killed'
    p = subprocess.Popen([sys.executable, '-m', 'imagic', 'edit', str(photo), 'a blue square', '--out', str(out),
                          '--model', str(tiny_path), *steps], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for(lambda: (out / '.checkpoints' / 'stage2.safetensors').exists(), p)
    time.sleep(0.3)
    p.send_signal(signal.SIGKILL); p.wait()
    assert not (out / 'edit.json').exists() and not list(out.glob('*.png'))  # nothing half-done is visible
    r = cli('edit', photo, 'a blue square', '--out', out, '--model', tiny_path, *steps, '--resume')
    assert r.returncode == 0, r.stderr
    info = json.loads((out / 'edit.json').read_text())
    assert info['resumed_at']['stage1'] == 30 and 0 < info['resumed_at']['stage2'] < 300, info['resumed_at']
    a, b = load_file(str(tmp_path / 'ref' / 'state.safetensors')), load_file(str(out / 'state.safetensors'))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # bit-identical to the uninterrupted fit
    assert not (out / '.checkpoints').exists()


BENCH = ['--embed-steps', '10', '--finetune-steps', '10', '--sample-steps', '5', '--eta', '0.6', '0.8', '--seeds', '0', '1']


def test_bench_killed_then_rerun_keeps_finished_items(tmp_path):
    ds = write_world_dataset(tmp_path / 'ds')
    items = read_dataset(ds)
    out = tmp_path / 'res'
    p = subprocess.Popen([sys.executable, '-m', 'imagic', 'bench', str(ds), '--out', str(out), *BENCH], env=ENV,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = lambda: [d for d in (out / 'items').glob('*') if not d.name.startswith('.')] if (out / 'items').exists() else []
    _wait_for(lambda: len(done()) >= 2, p, timeout=300)
    p.send_signal(signal.SIGKILL); p.wait()
    first = {d.name: (d / 'item.json').stat().st_mtime_ns for d in done()}
    assert 2 <= len(first) < len(items)
    assert all((out / 'items' / n / 'item.json').exists() for n in first)  # finished items are whole
    r = cli('bench', ds, '--out', out, *BENCH)
    assert r.returncode == 0, r.stderr
    assert f'{len(first)} already done, {len(items) - len(first)} to run' in r.stderr
    assert all((out / 'items' / n / 'item.json').stat().st_mtime_ns == t for n, t in first.items())  # not redone
    assert sorted(d.name for d in (out / 'items').iterdir()) == sorted(it.id for it in items)  # no leftovers
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['items'] == len(items) and [r['n'] for r in summary['table']] == [2 * len(items)] * 2
    assert (out / 'tradeoff.png').stat().st_size > 0 and (out / 'summary.csv').read_text().startswith('eta,clip')


def test_bench_sharded_over_two_processes_with_accelerate(tmp_path):
    ds = write_world_dataset(tmp_path / 'ds')
    items = read_dataset(ds)
    out = tmp_path / 'res'
    r = subprocess.run([str(BIN / 'accelerate'), 'launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
                        '--mixed_precision', 'no', '--dynamo_backend', 'no', '-m', 'imagic', 'bench', str(ds),
                        '--out', str(out), *BENCH], capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'process 1/2' in r.stderr and 'process 2/2' in r.stderr
    recs = [json.loads(p.read_text()) for p in (out / 'items').glob('*/item.json')]
    assert sorted(x['id'] for x in recs) == sorted(it.id for it in items)  # every item exactly once
    assert json.loads((out / 'summary.json').read_text())['items'] == len(items)
