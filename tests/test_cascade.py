"""The cascade (imagic.cascade) from outside: Imagic with an x4 upscaler, its state, the CLI and the bench runner, on tiny models."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

import imagic
from imagic.cli import main
from imagic.testing import save_tiny_model, save_tiny_sdxl_model, save_tiny_upscaler

FAST = ['--embed-steps', '2', '--finetune-steps', '2', '--sample-steps', '2', '--upscaler-steps', '2', '--upscaler-sample-steps', '2',
        '--eta', '0.7', '--seeds', '0', '-q', '--device', 'cpu']


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp('cascade')
    return save_tiny_model(d / 'base'), save_tiny_upscaler(d / 'up'), save_tiny_upscaler(d / 'up2', seed=1)


@pytest.fixture(scope='module')
def photo(tmp_path_factory):
    p = tmp_path_factory.mktemp('in') / 'in.png'
    im = Image.new('RGB', (160, 128), (240, 240, 240)); im.paste((200, 40, 40), (30, 30, 100, 100)); im.save(p)
    return p


def test_load_pipeline_loads_an_upscaler(models):
    from diffusers import StableDiffusionUpscalePipeline
    up = imagic.load_pipeline(models[1], device='cpu')
    assert isinstance(up, StableDiffusionUpscalePipeline) and imagic.core.model_family(up) == 'upscaler'
    assert not any(p.requires_grad for p in up.unet.parameters())


def test_upscaler_fit_lowers_its_loss_and_leaves_the_pretrained_alone(models):
    from imagic.cascade import finetune_upscaler, upscaler_condition
    up = imagic.load_pipeline(models[1], device='cpu')
    hi = torch.rand(3, 64, 64); lo = torch.nn.functional.avg_pool2d(hi[None], 4)[0]
    before = {k: v.clone() for k, v in up.unet.state_dict().items()}
    u, losses = finetune_upscaler(up, hi, lo, 'a red bird', steps=25, lr=1e-3, progress=False)
    c = upscaler_condition(up, 'a red bird', lo)
    lat = imagic.encode_image(up, hi)
    assert imagic.evaluation_loss(up, lat, c, unet=u) < imagic.evaluation_loss(up, lat, c)
    assert all(torch.equal(v, before[k]) for k, v in up.unet.state_dict().items())


def test_cli_edit_with_an_upscaler_writes_full_size_edits_and_a_state_that_refuses_another(models, photo, tmp_path):
    base, up, up2 = map(str, models)
    out = tmp_path / 'o'
    assert main(['edit', str(photo), 'a blue square', '--out', str(out), '--model', base, '--upscaler', up, *FAST]) == 0
    assert Image.open(out / 'eta0.70_seed0.png').size == (128, 102)  # 5:4 input, the upscaler's 128 px on the long side
    st = imagic.ImagicState.load(out / 'state.safetensors')
    assert st.upscaler_fingerprint and st.upscaler_weights and st.image_full.shape == (3, 128, 128)
    again = tmp_path / 'again'
    assert main(['edit', str(photo), 'a blue square', '--out', str(again), '--model', base, '--upscaler', up,
                 '--load-state', str(out / 'state.safetensors'), *FAST]) == 0
    a, b = np.asarray(Image.open(out / 'eta0.70_seed0.png'), int), np.asarray(Image.open(again / 'eta0.70_seed0.png'), int)
    assert np.abs(a - b).max() <= 1  # the saved state reproduces the upscaled edit within 1/255
    assert main(['edit', str(photo), 'a blue square', '--out', str(tmp_path / 'x'), '--model', base, '--upscaler', up2,
                 '--load-state', str(out / 'state.safetensors'), *FAST]) == 2


def test_bad_upscaler_is_one_line_exit_2(models, photo, tmp_path, capsys):
    base = str(models[0])
    assert main(['edit', str(photo), 'a blue square', '--out', str(tmp_path / 'o'), '--model', base, '--upscaler', base, *FAST]) == 2
    err = capsys.readouterr().err
    assert 'x4 upscaler' in err and err.count('\n') == 1


def test_pretrained_upscaler_ablation_and_base_edits(models, photo):
    pipe, up = imagic.load_pipeline(models[0], device='cpu'), imagic.load_pipeline(models[1], device='cpu')
    ed = imagic.Imagic(pipe, upscaler=up, embed_steps=2, finetune_steps=2, upscaler_steps=20, upscaler_lr=1e-3, sample_steps=2,
                       upscaler_sample_steps=3, etas=(0.7,), seeds=(0, 1))
    ed.fit(photo, 'a blue square', progress=False)
    ft, pre = ed.edit(progress=False), ed.edit(progress=False, pretrained_upscaler=True)
    base = ed.edit(progress=False, upscale=False)
    assert ft[0.7][0].size == (128, 128) and base[0.7][0].size == (32, 32)
    assert (np.asarray(ft[0.7][0]) != np.asarray(pre[0.7][0])).any()


def test_cascade_on_an_sdxl_base(tmp_path, photo):
    xl = imagic.load_pipeline(save_tiny_sdxl_model(tmp_path / 'xl'), device='cpu')
    up = imagic.load_pipeline(save_tiny_upscaler(tmp_path / 'up'), device='cpu')
    ed = imagic.Imagic(xl, upscaler=up, embed_steps=2, finetune_steps=2, upscaler_steps=2, sample_steps=2, upscaler_sample_steps=2,
                       etas=(0.7,), seeds=(0,))
    ed.fit(photo, 'a blue square', progress=False)
    assert ed.edit(progress=False)[0.7][0].size == (128, 128)


def test_bench_with_an_upscaler(models, tmp_path):
    from imagic.bench import read_dataset, write_world_dataset
    ds = write_world_dataset(tmp_path / 'ds', n_images=1, res=128)  # edits never come out larger than their input
    out = tmp_path / 'res'
    assert main(['bench', str(ds), '--out', str(out), '--model', str(models[0]), '--upscaler', str(models[1]), *FAST]) == 0
    for it in read_dataset(ds):
        assert Image.open(out / 'items' / it.id / 'eta0.70_seed0.png').size == (128, 128)
