"""Imagic on Stable Diffusion XL, on tiny random SDXL-format pipelines: the same code path as SD 1.x/2.x."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import imagic
from imagic.core import TextCondition, model_family
from imagic.state import ImagicState
from imagic.testing import save_tiny_sdxl_model

QUICK = dict(embed_steps=30, embed_lr=2e-2, finetune_steps=30, finetune_lr=1e-3, sample_steps=4, etas=(0.0, 1.0),
             seeds=(0, 1), guidance_scale=3.0)


@pytest.fixture(scope='module', params=['epsilon', 'v_prediction'])
def xl_path(request, tmp_path_factory):
    return save_tiny_sdxl_model(tmp_path_factory.mktemp('xl') / request.param, prediction_type=request.param)


@pytest.fixture(scope='module')
def xl(xl_path):
    return imagic.load_pipeline(xl_path, device='cpu')


@pytest.fixture(scope='module')
def disc():
    img = Image.new('RGB', (48, 40), (255, 255, 255))
    for x in range(48):
        for y in range(40):
            if (x - 18) ** 2 + (y - 16) ** 2 < 64: img.putpixel((x, y), (30, 60, 220))
    return img


@pytest.fixture(scope='module')
def fitted(xl, disc):
    ed = imagic.Imagic(xl, **QUICK)
    ed.fit(disc, 'a red bird', progress=False)
    return ed


def test_loads_as_sdxl_with_ddim_that_does_not_clip(xl, xl_path):
    from diffusers import StableDiffusionXLPipeline
    assert isinstance(xl, StableDiffusionXLPipeline) and model_family(xl) == 'sdxl'
    assert json.loads((xl_path / 'scheduler' / 'scheduler_config.json').read_text())['_class_name'] == 'EulerDiscreteScheduler'
    cfg = xl.scheduler.config
    assert type(xl.scheduler).__name__ == 'DDIMScheduler' and not cfg.clip_sample and not cfg.set_alpha_to_one
    assert cfg.prediction_type == xl_path.name
    assert imagic.image_size(xl) == 32


def test_force_upcast_vae_stays_float32_in_half_precision(xl_path):
    half = imagic.load_pipeline(xl_path, device='cpu', dtype=torch.float16)
    assert half.unet.dtype == torch.float16 and half.vae.dtype == torch.float32
    z = imagic.encode_image(half, torch.rand(3, 32, 32))
    assert torch.isfinite(z).all() and torch.isfinite(imagic.decode_latents(half, z)).all()


def test_condition_is_what_the_pipeline_encodes(xl):
    c = imagic.encode_text(xl, 'a red bird', original_size=(40, 40))
    ref, neg, pooled, _ = xl.encode_prompt('a red bird', device='cpu', do_classifier_free_guidance=True)
    assert torch.equal(c.embeds, ref) and torch.equal(c.pooled, pooled)
    assert c.embeds.shape == (1, 77, 64)  # both encoders' widths concatenated (2048 on the real model)
    assert c.time_ids.tolist() == [[40, 40, 0, 0, 32, 32]]
    assert neg.abs().sum() == 0  # force_zeros_for_empty_prompt, which imagic.core.unconditional follows


def test_stages_lower_the_loss_and_leave_the_pretrained_unet_alone(xl, xl_path, fitted):
    st = fitted.state
    x = st.image
    lat = imagic.encode_image(xl, x)
    l_tgt = imagic.evaluation_loss(xl, lat, st.e_tgt)
    l_opt = imagic.evaluation_loss(xl, lat, st.e_opt)
    l_ft = imagic.evaluation_loss(xl, lat, st.e_opt, unet=fitted.unet)
    assert l_opt < l_tgt and l_ft < l_opt * 0.95, (l_tgt, l_opt, l_ft)
    # stage 1 moved both embeddings, and kept the size ids
    assert not torch.equal(st.e_opt.embeds, st.e_tgt.embeds) and not torch.equal(st.e_opt.pooled, st.e_tgt.pooled)
    assert torch.equal(st.e_opt.time_ids, st.e_tgt.time_ids)
    assert st.e_tgt.time_ids.tolist() == [[40, 40, 0, 0, 32, 32]]  # the 48×40 input's centred square
    fresh = imagic.load_pipeline(xl_path, device='cpu')
    for (k, a), b in zip(xl.unet.state_dict().items(), fresh.unet.state_dict().values()):
        assert torch.equal(a, b), k


def test_eta_moves_the_edit_on_both_embeddings(fitted):
    e_tgt, e_opt = fitted.state.e_tgt, fitted.state.e_opt
    mid = imagic.interpolate(e_tgt, e_opt, 0.25)
    assert torch.allclose(mid.embeds, 0.25 * e_tgt.embeds + 0.75 * e_opt.embeds)
    assert torch.allclose(mid.pooled, 0.25 * e_tgt.pooled + 0.75 * e_opt.pooled)
    ims = fitted.edit(progress=False)
    a, b = np.asarray(ims[0.0][0], float), np.asarray(ims[1.0][0], float)
    assert np.abs(a - b).mean() > 1  # η changes the picture
    again = fitted.edit(etas=[0.0], seeds=[0], progress=False)
    assert np.array_equal(np.asarray(again[0.0][0]), np.asarray(ims[0.0][0]))  # seeded


def test_save_load_reproduces_edits_and_refuses_the_other_family(fitted, xl, tmp_path, pipe):
    path = fitted.save(tmp_path / 'xl.safetensors')
    with safe_open(str(path), 'pt') as f:
        meta = f.metadata()
    assert meta['format'] == imagic.state.STATE_FORMAT and json.loads(meta['imagic'])['family'] == 'sdxl'
    back = imagic.Imagic.load(xl, path)
    assert isinstance(back.state.e_opt, TextCondition)
    a, b = fitted.edit(progress=False), back.edit(progress=False)
    for eta in a:
        for s in a[eta]: assert np.array_equal(np.asarray(a[eta][s]), np.asarray(b[eta][s]))
    with pytest.raises(ValueError, match='Stable Diffusion XL model') as e:
        imagic.Imagic.load(pipe, path)
    assert '\n' not in str(e.value)


def test_sd_state_is_refused_on_sdxl_and_old_states_still_load(pipe, image, xl, tmp_path):
    ed = imagic.Imagic(pipe, embed_steps=2, finetune_steps=2, sample_steps=2, etas=(0.5,), seeds=(0,))
    ed.fit(image, 'a blue circle', progress=False)
    path = ed.save(tmp_path / 'sd.safetensors')
    with pytest.raises(ValueError, match='not on a Stable Diffusion XL one'):
        imagic.Imagic.load(xl, path)
    # a state written by the first format (no family) loads as a Stable Diffusion state
    tensors = load_file(str(path))
    with safe_open(str(path), 'pt') as f: meta = f.metadata()
    info = json.loads(meta['imagic']); info.pop('family')
    save_file(tensors, str(tmp_path / 'v1.safetensors'), metadata={'format': 'imagic-state/1', 'imagic': json.dumps(info)})
    old = ImagicState.load(tmp_path / 'v1.safetensors')
    assert old.family == 'sd' and torch.equal(old.e_opt, ed.state.e_opt)
    imagic.Imagic.from_state(pipe, old).edit(progress=False)


def test_lora_bf16_and_checkpoints_on_sdxl(xl, disc, tmp_path):
    s = imagic.Settings(embed_steps=4, embed_lr=1e-2, finetune_steps=4, finetune_lr=1e-3, finetune_method='lora',
                        lora_rank=2, mixed_precision='bf16', gradient_checkpointing=True)
    x = imagic.load_image(disc, 32)
    lat, e = imagic.encode_image(xl, x), imagic.encode_text(xl, 'a red bird')
    from imagic.stages import fit_stages
    ref = fit_stages(xl, lat, e, s, progress=False)
    ck = tmp_path / 'ck'
    fit_stages(xl, lat, e, s.replace(finetune_steps=2), progress=False, checkpoint_dir=ck, checkpoint_every=1)
    again = fit_stages(xl, lat, e, s, progress=False, checkpoint_dir=ck, checkpoint_every=1)  # stage 1 resumes, stage 2 starts afresh
    assert torch.equal(again[0].embeds, ref[0].embeds) and torch.equal(again[0].pooled, ref[0].pooled)
    assert all(torch.equal(p, q) for p, q in zip(again[1].parameters(), ref[1].parameters()))
    assert any(not torch.equal(p, q) for p, q in zip(ref[1].parameters(), xl.unet.parameters()))


def test_presets_for_sdxl(xl):
    fast = imagic.Settings.for_model(xl, preset='fast')
    assert fast.finetune_method == 'lora' and fast.gradient_checkpointing and fast.finetune_lr == 1e-4
    paper = imagic.Settings.for_model(xl, preset='paper')
    assert (paper.embed_steps, paper.embed_lr, paper.finetune_steps, paper.finetune_lr) == (1000, 2e-3, 1500, 5e-7)
    assert paper.finetune_method == 'full'


def test_cli_edit_on_an_sdxl_folder(xl_path, disc, tmp_path):
    from imagic.cli import main
    photo = tmp_path / 'in.png'; disc.save(photo)
    out = tmp_path / 'out'
    code = main(['edit', str(photo), 'a red bird', '--out', str(out), '--model', str(xl_path), '--embed-steps', '2',
                 '--finetune-steps', '2', '--sample-steps', '2', '--eta', '0.7', '--seeds', '0', '-q', '--device', 'cpu'])
    assert code == 0
    st = ImagicState.load(out / 'state.safetensors')
    assert st.family == 'sdxl' and st.e_tgt.time_ids.tolist() == [[48, 48, 0, 0, 32, 32]]  # padded 48×40 input
    assert Image.open(out / 'eta0.70_seed0.png').size == (32, 27)


def test_bench_runs_an_sdxl_model(xl_path, tmp_path):
    from imagic.bench import read_dataset, write_world_dataset
    from imagic.cli import main
    ds = write_world_dataset(tmp_path / 'ds', n_images=1)
    out = tmp_path / 'res'
    code = main(['bench', str(ds), '--out', str(out), '--model', str(xl_path), '--embed-steps', '2', '--finetune-steps', '2',
                 '--sample-steps', '2', '--eta', '0.5', '--seeds', '0', '-q', '--device', 'cpu'])
    assert code == 0
    items = read_dataset(ds)
    for it in items:
        rec = json.loads((out / 'items' / it.id / 'item.json').read_text())
        assert rec['edits'][0]['file'] == 'eta0.50_seed0.png' and np.isfinite(rec['edits'][0]['clip'])
    assert json.loads((out / 'summary.json').read_text())['items'] == len(items)
