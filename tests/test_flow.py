"""The flow-matching families (SD3, FLUX.1) on tiny random pipelines built offline: loading, the three stages,
the loss and the sampler agreeing, states, refusals, LoRA and resume, presets, the command line, SDEdit."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import imagic
from imagic.core import (Settings, TextCondition, encode_image, encode_text, evaluation_loss, family, load_image, load_pipeline,
                         model_family)
from imagic.stages import Checkpoint, finetune, generate_latents, optimize_embedding
from imagic.testing import save_tiny_flux_model, save_tiny_sd3_model
from test_cli import run  # in-process `imagic ...`: (exit status, stderr)

FLOWS = ['sd3', 'flux']

SAVE = {'sd3': save_tiny_sd3_model, 'flux': save_tiny_flux_model}
CLASS = {'sd3': 'StableDiffusion3Pipeline', 'flux': 'FluxPipeline'}


@pytest.fixture(scope='module')
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp('flow')
    return {name: SAVE[name](root / name) for name in FLOWS}


@pytest.fixture(scope='module')
def pipes(folders):
    return {name: load_pipeline(folder, device='cpu') for name, folder in folders.items()}


@pytest.fixture(scope='module')
def picture():
    "Red above blue: something with structure for the model to learn."
    a = np.zeros((32, 32, 3), np.uint8); a[:16] = (200, 30, 30); a[16:] = (30, 60, 200)
    return load_image(Image.fromarray(a), 32)


@pytest.fixture(scope='module')
def fits(pipes, picture):
    "Imagic fitted on each flow pipeline, with learning rates large enough to move a random model in few steps."
    out = {}
    for name, pipe in pipes.items():
        before = {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
        im = imagic.Imagic(pipe, embed_steps=30, embed_lr=1e-2, finetune_steps=200, finetune_lr=2e-3, etas=(0.0, 1.0), seeds=(0,),
                           sample_steps=10)
        im.fit(picture, 'a blue bird', progress=False)
        out[name] = (im, before)
    return out


@pytest.mark.parametrize('name', FLOWS)
def test_load_keeps_the_flow_scheduler(pipes, name):
    pipe = pipes[name]
    assert type(pipe).__name__ == CLASS[name] and model_family(pipe) == name
    assert type(pipe.scheduler).__name__ == 'FlowMatchEulerDiscreteScheduler'  # no DDIM swap
    assert not any(p.requires_grad for p in pipe.transformer.parameters())
    assert imagic.image_size(pipe) == 32 and family(pipe).latent_shape(pipe) == (16, 8, 8)


def test_text_conditions_are_the_pipelines_own(pipes):
    sd3, flux = pipes['sd3'], pipes['flux']
    c = encode_text(sd3, 'a red bird')
    ref, _, ref_pooled, _ = sd3.encode_prompt('a red bird', None, None, do_classifier_free_guidance=False, max_sequence_length=16)
    assert isinstance(c, TextCondition) and c.time_ids is None
    assert torch.equal(c.embeds, ref) and torch.equal(c.pooled, ref_pooled) and c.embeds.shape == (1, 77 + 16, 64)
    f = encode_text(flux, ['a red bird', 'a blue bird'])
    ref, ref_pooled, _ = flux.encode_prompt(['a red bird', 'a blue bird'], None, max_sequence_length=16)
    assert torch.equal(f.embeds, ref) and torch.equal(f.pooled, ref_pooled) and f.embeds.shape == (2, 16, 64)


@pytest.mark.parametrize('name', FLOWS)
def test_stage_losses_fall_and_the_pretrained_transformer_is_untouched(fits, pipes, picture, name):
    im, before = fits[name]
    pipe = pipes[name]
    z = encode_image(pipe, picture)
    e_tgt, e_opt = im.state.e_tgt, im.state.e_opt
    assert evaluation_loss(pipe, z, e_opt) < evaluation_loss(pipe, z, e_tgt)            # stage 1
    assert evaluation_loss(pipe, z, e_opt, denoiser=im.denoiser) < 0.8 * evaluation_loss(pipe, z, e_opt)  # stage 2
    assert not torch.equal(e_opt.pooled, e_tgt.pooled)  # both embeddings learn
    assert all(torch.equal(v, pipe.transformer.state_dict()[k]) for k, v in before.items())
    assert im.unet is im.denoiser  # the 0.2 name still answers


@pytest.mark.parametrize('name', FLOWS)
def test_finetuned_transformer_reconstructs_the_input_at_eta_0(fits, pipes, picture, name):
    "The loss and the sampler agree on the flow convention: sampling e_opt with the fine-tuned model lands near the input."
    im, _ = fits[name]
    pipe = pipes[name]
    z = encode_image(pipe, picture)
    err = lambda d: (generate_latents(pipe, im.state.e_opt, [0], denoiser=d, steps=10, progress=False, guidance_scale=1.0) - z).pow(2).mean().item()
    pre, ft = err(None), err(im.denoiser)
    assert ft < 0.6 * pre, (pre, ft)


@pytest.mark.parametrize('name', FLOWS)
def test_eta_moves_the_edit_and_save_load_reproduces_it(fits, pipes, name, tmp_path):
    im, _ = fits[name]
    a = im.edit(progress=False)
    x0, x1 = (np.asarray(a[eta][0], dtype=float) for eta in (0.0, 1.0))
    assert np.abs(x0 - x1).mean() > 1
    path = im.save(tmp_path / 'state.safetensors')
    with safe_open(str(path), 'pt') as f: meta = f.metadata()
    assert meta['format'] == imagic.state.STATE_FORMAT == 'imagic-state/4' and json.loads(meta['imagic'])['family'] == name
    back = imagic.Imagic.load(pipes[name], path).edit(progress=False)
    for eta in (0.0, 1.0): assert np.array_equal(np.asarray(a[eta][0]), np.asarray(back[eta][0]))


def test_states_are_refused_across_families(fits, pipes, pipe, tmp_path):
    sd3_state = fits['sd3'][0].save(tmp_path / 'sd3.safetensors')
    for other, title in ((pipes['flux'], 'FLUX.1'), (pipe, 'Stable Diffusion 1.x/2.x')):
        with pytest.raises(ValueError, match=f"fitted on a Stable Diffusion 3 model .*not on a {title}"):
            imagic.Imagic.load(other, sd3_state)
    sd = imagic.Imagic(pipe, embed_steps=1, finetune_steps=1, seeds=(0,), etas=(0.5,), sample_steps=1)
    sd.fit(load_image(Image.new('RGB', (32, 32), (200, 30, 30)), 32), 'a red square', progress=False)
    with pytest.raises(ValueError, match='Stable Diffusion 1.x/2.x model .*not on a Stable Diffusion 3'):
        imagic.Imagic.load(pipes['sd3'], sd.save(tmp_path / 'sd.safetensors'))


@pytest.mark.parametrize('name', FLOWS)
def test_lora_with_gradient_checkpointing_resumes_exactly(pipes, picture, name, tmp_path):
    pipe = pipes[name]
    z = encode_image(pipe, picture)
    e = encode_text(pipe, 'a blue bird')
    kw = dict(lr=1e-2, progress=False, method='lora', lora_rank=2, gradient_checkpointing=True)
    full, lf = finetune(pipe, z, e, steps=6, generator=imagic.make_generator('cpu', 0), **kw)
    ck = Checkpoint(tmp_path / 'stage2.safetensors', every=3)
    def kill_at_5(step, loss, net):
        if step == 4: raise RuntimeError('killed')  # after 5 steps; the checkpoint holds step 3
    with pytest.raises(RuntimeError, match='killed'):
        finetune(pipe, z, e, steps=6, generator=imagic.make_generator('cpu', 0), checkpoint=ck, callback=kill_at_5, **kw)
    assert ck.saved_step() == 3
    again, lr_ = finetune(pipe, z, e, steps=6, generator=imagic.make_generator('cpu', 0), checkpoint=Checkpoint(ck.path, every=3), **kw)
    assert lr_ == lf and all(torch.equal(a, b) for a, b in zip(full.state_dict().values(), again.state_dict().values()))
    changed = [k for k, v in full.state_dict().items() if not torch.equal(v, pipe.transformer.state_dict()[k])]
    assert changed and all(any(p in k for p in ('to_q', 'to_k', 'to_v', 'to_out')) for k in changed)  # adapters on attention, fused
    assert not hasattr(full, 'peft_config') or not full.peft_config


def test_flux_distilled_guidance_reaches_the_transformer(pipes, picture):
    pipe = pipes['flux']
    z = encode_image(pipe, picture); e = encode_text(pipe, 'a bird')
    assert evaluation_loss(pipe, z, e, guidance=1.0) != evaluation_loss(pipe, z, e, guidance=8.0)
    a, b = (generate_latents(pipe, e, [0], steps=3, progress=False, guidance=g) for g in (1.0, 8.0))
    assert not torch.equal(a, b)
    with pytest.raises(ValueError, match='distilled_guidance'): Settings(distilled_guidance=-1)


def test_presets_and_family_defaults(pipes, folders):
    for name in FLOWS:
        fast = Settings.for_model(pipes[name], preset='fast')
        assert (fast.finetune_method, fast.gradient_checkpointing, fast.mixed_precision) == ('lora', True, 'auto')
        assert Settings.for_model(folders[name], preset='fast') == fast  # a folder reads as its pipeline
        paper = Settings.for_model(pipes[name], preset='paper')
        assert (paper.embed_steps, paper.finetune_steps, paper.finetune_method) == (1000, 1500, 'full')
    assert Settings.for_model(pipes['flux']).guidance_scale == 1.0  # distilled guidance: no negative pass by default
    assert Settings.for_model(pipes['sd3']).guidance_scale == 7.0
    with pytest.raises(ValueError, match='timestep_sampling'): Settings(timestep_sampling='cosine')


@pytest.mark.parametrize('name', FLOWS)
def test_sdedit_runs_and_inversion_methods_refuse_clearly(pipes, picture, name):
    from imagic.baselines import METHODS
    pipe = pipes[name]
    out = METHODS['sdedit'](pipe, picture, 'a blue bird', seeds=(0, 1), steps=4, strength=0.5)
    assert sorted(out) == [0, 1] and out[0].size == (32, 32)
    for method in ('ddim_inversion', 'ledits'):
        with pytest.raises(NotImplementedError, match=CLASS[name]):
            METHODS[method](pipe, picture, 'a blue bird', source_text='a red bird', seeds=(0,), steps=2)


@pytest.mark.parametrize('name', FLOWS)
def test_cli_edit_and_bench_on_a_flow_folder(folders, name, tmp_path):
    from imagic.bench import write_world_dataset
    img = tmp_path / 'in.png'; Image.new('RGB', (40, 40), (200, 30, 30)).save(img)
    quick = ['--embed-steps', '2', '--finetune-steps', '2', '--sample-steps', '2', '--eta', '0.7', '--seeds', '0', '-q']
    code, err = run('edit', img, 'a blue bird', '--out', tmp_path / 'e', '--model', folders[name], *quick)
    assert code == 0, err
    assert (tmp_path / 'e' / 'state.safetensors').exists() and list((tmp_path / 'e').glob('*.png'))
    ds = write_world_dataset(tmp_path / 'ds', n_images=1)
    code, err = run('bench', ds, '--out', tmp_path / 'b', '--model', folders[name], *quick)
    assert code == 0, err
    assert list((tmp_path / 'b' / 'items').glob('*/item.json'))


def test_cli_refuses_an_upscaler_as_the_base_model(tmp_path):
    img = tmp_path / 'in.png'; Image.new('RGB', (64, 64), (200, 30, 30)).save(img)
    code, err = run('edit', img, 'a blue bird', '--out', tmp_path / 'o', '--model', 'birds-x4', '-q')
    assert code == 2 and err.count('\n') == 1 and 'x4 upscaler' in err and '--upscaler' in err, err
    assert not (tmp_path / 'o').exists()
    with pytest.raises(ValueError, match='not a text-to-image model'):
        imagic.Imagic(load_pipeline('birds-x4', device='cpu'))


def test_the_cascade_takes_a_flow_base(pipes, tmp_path):
    "Imagen's second model behind a FLUX.1 base: the edits come out at the upscaler's size."
    from imagic.testing import save_tiny_upscaler
    up = load_pipeline(save_tiny_upscaler(tmp_path / 'up'), device='cpu')
    im = imagic.Imagic(pipes['flux'], upscaler=up, embed_steps=2, finetune_steps=2, upscaler_steps=2, etas=(0.7,), seeds=(0,),
                       sample_steps=2, upscaler_sample_steps=2)
    im.fit(Image.new('RGB', (128, 128), (200, 30, 30)), 'a red bird', progress=False)
    assert im.edit(progress=False)[0.7][0].size == (128, 128)
    assert im.state.upscaler_weights  # the upscaler was fine-tuned too


def test_cli_refuses_a_method_the_family_lacks(folders, tmp_path):
    img = tmp_path / 'in.png'; Image.new('RGB', (40, 40), (200, 30, 30)).save(img)
    code, err = run('edit', img, 'a blue bird', '--out', tmp_path / 'o', '--model', folders['flux'], '--method', 'ddim_inversion',
                    '--source-text', 'a red bird', '-q')
    assert code == 2 and err.count('\n') == 1 and 'FluxPipeline' in err, err
    assert not (tmp_path / 'o').exists()


def test_no_code_outside_the_families_asks_which_family_it_holds():
    "The families are the one place that tells models apart: no comparison with a family's name, no pipeline or denoiser class check elsewhere."
    import re
    from pathlib import Path
    root = Path(imagic.__file__).parent
    patterns = (r"model_family\([^)]*\)\s*[=!]=", r"[=!]=\s*'(sd|sdxl|sd3|flux|if|if_sr)'", r"(fam|family\([^)]*\))\.name\s*[=!]=",
                r"isinstance\([^)]*(Pipeline|UNet2DConditionModel|Transformer2DModel)\b")
    offenders = [f'{py.relative_to(root)}: {m.group(0)}' for py in root.rglob('*.py')
                 if 'families' not in py.parts and py.name != '_modidx.py'
                 for p in patterns for m in re.finditer(p, py.read_text())]
    assert not offenders, offenders
    assert len(list((root / 'families').glob('*.py'))) == 8  # __init__, base and one module per family (IF's holds both its stages)
