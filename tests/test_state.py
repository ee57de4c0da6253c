"""ImagicState and the Imagic object: round trips, model/image checks, settings precedence."""
import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import imagic
from imagic.core import SETTINGS_FILE
from imagic.state import image_fingerprint
from imagic.testing import save_tiny_model

FAST = dict(embed_steps=4, embed_lr=1e-2, finetune_steps=4, finetune_lr=1e-3, sample_steps=3, etas=(0.0, 0.5, 1.0), seeds=(0, 2))


@pytest.fixture(scope='module')
def fitted_imagic(pipe, image):
    im = imagic.Imagic(pipe, **FAST)
    im.fit(image, 'a blue circle on a white background', progress=False)
    return im


def test_fit_and_edit_shapes(fitted_imagic):
    st = fitted_imagic.state
    assert st.text == 'a blue circle on a white background'
    assert len(st.embed_losses) == 4 and len(st.finetune_losses) == 4
    assert st.unet_weights, 'full fine-tuning changes the UNet'
    edits = fitted_imagic.edit(progress=False)
    assert list(edits) == [0.0, 0.5, 1.0] and all(list(row) == [0, 2] for row in edits.values())
    assert edits[0.5][2].size == (32, 32)


def test_state_round_trip_is_exact(fitted_imagic, pipe, tmp_path):
    path = fitted_imagic.save(tmp_path / 'a.safetensors')
    st, back = fitted_imagic.state, imagic.ImagicState.load(path)
    for k in ('e_tgt', 'e_opt', 'image'):
        assert torch.equal(getattr(st, k), getattr(back, k)), k
    assert back.unet_weights.keys() == st.unet_weights.keys()
    assert all(torch.equal(v, back.unet_weights[k]) for k, v in st.unet_weights.items())
    for k in ('text', 'settings', 'model', 'model_fingerprint', 'image_fingerprint', 'embed_losses', 'finetune_losses', 'version'):
        assert getattr(st, k) == getattr(back, k), k
    # the rebuilt UNet is the fine-tuned one, bit for bit
    rebuilt = back.finetuned_unet(pipe)
    assert all(torch.equal(a, b) for a, b in zip(rebuilt.parameters(), fitted_imagic.unet.parameters()))


def test_loaded_imagic_edits_identically(fitted_imagic, pipe, tmp_path):
    path = fitted_imagic.save(tmp_path / 'b.safetensors')
    loaded = imagic.Imagic.load(pipe, path)
    a = fitted_imagic.edit(0.5, [2], progress=False)[0.5][2]
    b = loaded.edit(0.5, [2], progress=False)[0.5][2]
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert loaded.settings.sample_steps == FAST['sample_steps']
    assert imagic.Imagic.load(pipe, path, sample_steps=7).settings.sample_steps == 7


def test_state_from_another_model_is_refused(fitted_imagic, tmp_path):
    path = fitted_imagic.save(tmp_path / 'c.safetensors')
    other = imagic.load_pipeline(save_tiny_model(tmp_path / 'other', seed=9), device='cpu')
    with pytest.raises(ValueError, match='another model'):
        imagic.Imagic.load(other, path)


def test_state_checks_its_image(fitted_imagic, image):
    fitted_imagic.state.check_image(image)
    with pytest.raises(ValueError, match='different image'):
        fitted_imagic.state.check_image(image.flip(-1))


def test_non_safetensors_state_is_refused_without_unpickling(tmp_path):
    evil = tmp_path / 'evil.safetensors'
    evil.write_bytes(pickle.dumps({'e_opt': [1, 2, 3]}))
    with pytest.raises(ValueError, match='not an imagic state'):
        imagic.ImagicState.load(evil)
    with pytest.raises(FileNotFoundError):
        imagic.ImagicState.load(tmp_path / 'missing.safetensors')
    from safetensors.torch import save_file
    save_file({'x': torch.zeros(2)}, str(tmp_path / 'foreign.safetensors'))
    with pytest.raises(ValueError, match='not an imagic state'):
        imagic.ImagicState.load(tmp_path / 'foreign.safetensors')


def test_save_is_atomic_and_leaves_no_temporary_files(fitted_imagic, tmp_path):
    fitted_imagic.save(tmp_path / 'd.safetensors')
    assert [p.name for p in tmp_path.iterdir()] == ['d.safetensors']


def test_settings_precedence(tmp_path):
    path = save_tiny_model(tmp_path / 'm')
    assert imagic.Settings.for_model(path).embed_lr == 2e-3  # the paper's value without a file
    (path / SETTINGS_FILE).write_text(json.dumps({'embed_lr': 0.05, 'finetune_steps': 10}))
    pipe = imagic.load_pipeline(path, device='cpu')
    im = imagic.Imagic(pipe, finetune_steps=3)
    assert (im.settings.embed_lr, im.settings.finetune_steps, im.settings.embed_steps) == (0.05, 3, 1000)
    (path / SETTINGS_FILE).write_text(json.dumps({'no_such_setting': 1}))
    with pytest.raises(ValueError, match='unknown setting'):
        imagic.Settings.for_model(path)


def test_fit_rejects_bad_text_and_image(pipe, image):
    im = imagic.Imagic(pipe, **FAST)
    for bad in ('', '   ', None):
        with pytest.raises(ValueError, match='empty'):
            im.fit(image, bad, progress=False)
    with pytest.raises(ValueError, match='image tensor'):
        im.fit(torch.rand(3, 16, 16), 'a cat', progress=False)
    with pytest.raises(RuntimeError, match='fit'):
        im.edit(0.5, [0], progress=False)


def test_fit_records_the_image_fingerprint(fitted_imagic, image):
    assert fitted_imagic.state.image_fingerprint == image_fingerprint(image)
