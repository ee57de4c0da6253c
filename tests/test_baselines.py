"""The baselines (imagic.baselines) from outside: one signature, seeded, on the bundled model and through the CLI and bench runner."""
import json

import numpy as np
import pytest
from PIL import Image

import imagic
from imagic.baselines import METHODS, knobs_for
from imagic.cli import main

QUICK = {'sdedit': dict(steps=8), 'ddim_inversion': dict(steps=8), 'ledits': dict(steps=8),
         'imagic': dict(embed_steps=5, finetune_steps=5, sample_steps=5)}


@pytest.fixture(scope='module')
def bundled():
    return imagic.load_pipeline(device='cpu')


@pytest.fixture(scope='module')
def scene():
    from imagic.world import Scene, render
    return Image.fromarray(render(Scene('standing', 'red', 'white', 'none', .45, .55, .36, 'left', 'black', 'plain')))


def test_registry_names():
    assert sorted(METHODS) == ['ddim_inversion', 'imagic', 'ledits', 'sdedit']


@pytest.mark.parametrize('name', sorted(METHODS))
def test_every_method_on_the_bundled_model_is_seeded(bundled, scene, name):
    kw = dict(source_text='a red bird standing on a white background', seeds=(0, 1), **QUICK[name])
    a = METHODS[name](bundled, scene, 'a blue bird standing on a white background', **kw)
    b = METHODS[name](bundled, scene, 'a blue bird standing on a white background', **kw)
    assert list(a) == [0, 1] and all(im.size == (64, 64) for im in a.values())
    for s in a: assert np.array_equal(np.asarray(a[s]), np.asarray(b[s]))  # the same call gives the same images
    same = np.array_equal(np.asarray(a[0]), np.asarray(a[1]))
    assert same == (name == 'ddim_inversion')  # only the inversion is deterministic: its seeds are one try


@pytest.mark.parametrize('name', ['ddim_inversion', 'ledits'])
def test_inverting_methods_need_a_source_caption(bundled, scene, name):
    with pytest.raises(ValueError, match='source_text'):
        METHODS[name](bundled, scene, 'a blue bird standing on a white background', seeds=(0,))


def test_stored_knobs_are_defaults_and_imagic_settings_ignore_them(tmp_path, bundled):
    import shutil
    from imagic.baselines import store_knobs
    from imagic.core import BUNDLED_MODELS
    folder = shutil.copytree(BUNDLED_MODELS['birds'], tmp_path / 'm')
    store_knobs(folder, 'ledits', {'edit_guidance_scale': 9.0})
    pipe = imagic.load_pipeline(folder, device='cpu')
    assert knobs_for(pipe, 'ledits')['edit_guidance_scale'] == 9.0 and knobs_for(pipe, 'ledits', edit_guidance_scale=2)['edit_guidance_scale'] == 2
    assert imagic.Settings.for_model(folder) == imagic.Settings.for_model('birds')


def test_cli_edit_with_a_baseline(scene, tmp_path):
    photo = tmp_path / 'in.png'; scene.save(photo)
    out = tmp_path / 'out'
    code = main(['edit', str(photo), 'a blue bird standing on a white background', '--out', str(out), '--method', 'ddim_inversion',
                 '--source-text', 'a red bird standing on a white background', '--seeds', '0', '1', '-q', '--device', 'cpu'])
    assert code == 0
    info = json.loads((out / 'edit.json').read_text())
    assert info['method'] == 'ddim_inversion' and [o['file'] for o in info['outputs']] == ['ddim_inversion_seed0.png', 'ddim_inversion_seed1.png']
    assert not (out / 'state.safetensors').exists()


def test_cli_baseline_without_source_text_is_one_line_exit_2(scene, tmp_path, capsys):
    photo = tmp_path / 'in.png'; scene.save(photo)
    code = main(['edit', str(photo), 'a blue circle', '--out', str(tmp_path / 'o'), '--method', 'ledits', '-q', '--device', 'cpu'])
    err = capsys.readouterr().err
    assert code == 2 and 'needs --source-text' in err and err.count('\n') == 1
    assert not (tmp_path / 'o').exists()


def test_bench_with_a_baseline_skips_items_without_a_source_caption(tmp_path):
    from imagic.bench import write_world_dataset
    ds = write_world_dataset(tmp_path / 'ds', n_images=2)
    entries = json.loads((ds / 'input_list.json').read_text())
    for e in entries[1:]: e.pop('source_text')  # only the first item keeps its input's caption
    (ds / 'input_list.json').write_text(json.dumps(entries))
    out = tmp_path / 'res'
    assert main(['bench', str(ds), '--out', str(out), '--method', 'ddim_inversion', '--seeds', '0', '-q', '--device', 'cpu']) == 0
    done = [json.loads(p.read_text()) for p in (out / 'items').glob('*/item.json')]
    assert len(done) == 1 and done[0]['method'] == 'ddim_inversion' and done[0]['edits'][0]['eta'] is None
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['items'] == 1
    # one method per output folder
    assert main(['bench', str(ds), '--out', str(out), '--method', 'sdedit', '-q', '--device', 'cpu']) == 2


def test_imagic_runs_after_ledits_on_the_shared_pipeline(bundled):
    # LEDITS++ (masks on: the bundled model has cross-attention where it reads them) once left its attention
    # processors on the shared UNet, and Imagic's copy of the UNet then failed
    from imagic.baselines import compare
    from imagic.world import heldout_edits
    before = {k: type(v) for k, v in bundled.unet.attn_processors.items()}
    recs = compare(bundled, heldout_edits(1), methods=('ledits', 'imagic'), seeds=(0,), knobs=QUICK, progress=False)
    assert [r['method'] for r in recs] == ['ledits', 'imagic']
    assert {k: type(v) for k, v in bundled.unet.attn_processors.items()} == before


def test_comparison_script_prints_the_table(tmp_path, capsys):
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location('compare_script', Path(__file__).parent.parent / 'benchmarks' / 'compare.py')
    script = importlib.util.module_from_spec(spec); spec.loader.exec_module(script)
    script.main(['--edits', '2', '--methods', 'sdedit', 'ddim_inversion', '--records', str(tmp_path / 'r.jsonl')])
    out = capsys.readouterr().out
    assert '| sdedit | 2 | all |' in out and 'ddim_inversion (deterministic: 1 try)' in out
    assert len((tmp_path / 'r.jsonl').read_text().splitlines()) == 4


def test_comparison_script_shares_the_edits_between_shards(tmp_path, capsys):
    "Two processes with --shard 0/2 and 1/2 each run every other edit into one records file; a run without --shard then reads them all and runs nothing."
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location('compare_script', Path(__file__).parent.parent / 'benchmarks' / 'compare.py')
    script = importlib.util.module_from_spec(spec); spec.loader.exec_module(script)
    rec = tmp_path / 'r.jsonl'
    common = ['--edits', '3', '--methods', 'ddim_inversion', '--records', str(rec)]
    script.main(common + ['--shard', '1/2'])
    assert [json.loads(l)['edit'] for l in rec.read_text().splitlines()] == [1]
    script.main(common + ['--shard', '0/2'])
    assert sorted(json.loads(l)['edit'] for l in rec.read_text().splitlines()) == [0, 1, 2]
    capsys.readouterr()
    script.main(common)
    assert len(rec.read_text().splitlines()) == 3 and '| ddim_inversion (deterministic: 1 try) | 3 | all |' in capsys.readouterr().out
