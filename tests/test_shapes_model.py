"""The bundled shapes model and its CLIP, as a user gets them: loaded by name from the installed package."""
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import imagic
from imagic.core import BUNDLED_MODELS, SETTINGS_FILE
from imagic.shapes_world import Scene, render
from imagic.world_clip import CLIP_DIR, load_clip, zero_shot_accuracy
from imagic.world_eval import Edit, judge, sample_quality

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def shapes():
    return imagic.load_pipeline('shapes', device='cpu')


def _folder_mb(path): return sum(p.stat().st_size for p in Path(path).rglob('*') if p.is_file()) / 1e6


def test_bundled_files_are_small_and_in_safetensors():
    assert _folder_mb(BUNDLED_MODELS['shapes']) <= 25
    assert _folder_mb(CLIP_DIR) <= 15
    weights = list(BUNDLED_MODELS['shapes'].rglob('*.safetensors')) + list(CLIP_DIR.rglob('*.safetensors'))
    assert len(weights) == 4 and not list(BUNDLED_MODELS['shapes'].rglob('*.bin'))


def test_loads_by_name_through_diffusers(shapes):
    assert type(shapes.scheduler).__name__ == 'DDIMScheduler'
    assert imagic.image_size(shapes) == 32 and shapes.unet.dtype == torch.float32
    assert shapes.vae.config.scaling_factor != 0.18215
    assert shapes.tokenizer('a red circle').input_ids[:2] == [49406, 320]


def test_recommended_settings_differ_from_the_paper(shapes):
    rec = json.loads((BUNDLED_MODELS['shapes'] / SETTINGS_FILE).read_text())
    presets = rec.pop('presets', {})
    assert set(presets) <= set(imagic.core.PRESETS)  # a model only adjusts the named presets
    s = imagic.Settings.for_model(shapes)
    assert all(getattr(s, k) == (tuple(v) if isinstance(v, list) else v) for k, v in rec.items())
    assert s.finetune_lr != imagic.Settings().finetune_lr


def test_text_to_image_draws_what_the_caption_says(shapes):
    s = imagic.Settings.for_model(shapes)
    q = sample_quality(shapes, n=54, guidance_scale=s.guidance_scale, steps=25, seed=100, progress=False)
    assert q['all'] >= 0.8, {k: q[k] for k in ('shape', 'colour', 'background', 'all')}
    assert q['cx_std'] > 0.1 and q['size_std'] > 0.03  # layouts vary: no collapse


def test_one_edit_end_to_end(shapes):
    src = Scene('circle', 'red', 'white', 0.3, 0.3, 0.3)
    edit = Edit(src, Scene('circle', 'blue', 'white', 0.3, 0.3, 0.3), 'colour')
    editor = imagic.Imagic(shapes)
    editor.fit(torch.from_numpy(render(src, 32)).permute(2, 0, 1).float() / 255, edit.text, progress=False)
    eta = editor.settings.etas[len(editor.settings.etas) // 2]
    edits = editor.edit(eta, progress=False)[eta]
    assert any(judge(edit, im)['both'] for im in edits.values())


def test_world_clip_zero_shot():
    model, preprocess, tokenizer = load_clip()
    acc = zero_shot_accuracy(model, n=162, seed=31337)
    assert min(acc.values()) >= 0.9, acc


def test_wheel_ships_the_models(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    names = zipfile.ZipFile(next(tmp_path.glob('imagic-*.whl'))).namelist()
    for needed in ('imagic/models/shapes/model_index.json', 'imagic/models/shapes/unet/diffusion_pytorch_model.safetensors',
                   f'imagic/models/shapes/{SETTINGS_FILE}', 'imagic/models/shapes-clip/open_clip_model.safetensors'):
        assert needed in names, needed
