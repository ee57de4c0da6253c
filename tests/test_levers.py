"""The speed and memory levers of stages 1-2 and the named presets: each still edits correctly on the bundled model."""
import pytest
import torch

import imagic
from imagic.core import Settings
from imagic.shapes_world import Scene, render
from imagic.world_eval import Edit, judge


@pytest.fixture(scope='module')
def shapes():
    return imagic.load_pipeline('shapes', device='cpu')


SRC = Scene('square', 'red', 'white', 0.35, 0.6, 0.32)
EDIT = Edit(SRC, Scene('square', 'blue', 'white', 0.35, 0.6, 0.32), 'colour')


def _edit_succeeds(pipe, settings):
    editor = imagic.Imagic(pipe, settings)
    editor.fit(torch.from_numpy(render(SRC, 32)).permute(2, 0, 1).float() / 255, EDIT.text, progress=False)
    assert editor.state.unet_weights, 'stage 2 changed nothing'
    eta = settings.etas[len(settings.etas) // 2]
    ims = editor.edit(eta, progress=False)[eta]
    verdicts = [judge(EDIT, im) for im in ims.values()]
    assert any(v['both'] for v in verdicts), verdicts
    return editor


# LoRA on every convolution and linear layer is the shapes model's `fast` preset (test below). LoRA on the attention
# projections alone does not edit reliably on this model (validation sweep in nbs/08: 22-56% of edits succeed), so
# only its structure is checked here.
LORA = dict(finetune_method='lora', lora_rank=8, finetune_lr=1e-3, finetune_steps=400)
LEVERS = {  # fewer fine-tuning steps than recommended where that still edits (validation sweep in nbs/08), to keep CI short
    'several samples per step': dict(finetune_batch=4, finetune_steps=200),
    'gradient checkpointing': dict(gradient_checkpointing=True, finetune_steps=400),
    'bf16 autocast': dict(mixed_precision='bf16', finetune_steps=400),
    'bf16 sampling': dict(sample_precision='bf16', finetune_steps=400),
}


@pytest.mark.parametrize('name', list(LEVERS))
def test_each_lever_still_edits(shapes, name):
    _edit_succeeds(shapes, Settings.for_model(shapes, **LEVERS[name]))


def test_lora_changes_only_attention_projections(shapes):
    s = Settings.for_model(shapes, **{**LORA, 'embed_steps': 5, 'finetune_steps': 5})
    editor = imagic.Imagic(shapes, s)
    editor.fit(torch.from_numpy(render(SRC, 32)).permute(2, 0, 1).float() / 255, EDIT.text, progress=False)
    keys = list(editor.state.unet_weights)
    assert keys and all(any(f'.{t}.' in k for t in ('to_q', 'to_k', 'to_v', 'to_out.0')) for k in keys), keys[:5]


def test_fast_preset_edits(shapes):
    s = Settings.for_model(shapes, preset='fast')  # the model's own 'fast' (LoRA on all layers, rank 16) refines the generic one
    assert (s.finetune_method, s.lora_targets, s.lora_rank) == ('lora', 'all', 16)
    assert s.finetune_steps < Settings.for_model(shapes).finetune_steps
    editor = _edit_succeeds(shapes, s)
    assert any('resnets' in k for k in editor.state.unet_weights)  # the convolutions moved too


def test_unknown_lora_targets_and_precisions_are_refused():
    with pytest.raises(ValueError, match='lora_targets'):
        Settings(lora_targets='convs')
    with pytest.raises(ValueError, match='sample_precision'):
        Settings(sample_precision='fp8')
    with pytest.raises(ValueError, match='mixed_precision'):
        Settings(mixed_precision='fp8')


def test_presets_compose_with_the_model_and_the_caller(shapes):
    paper = Settings.for_model(shapes, preset='paper')
    assert (paper.embed_steps, paper.finetune_steps, paper.finetune_batch, paper.finetune_method) == (1000, 1500, 1, 'full')
    assert paper.guidance_scale == Settings.for_model(shapes).guidance_scale  # the model's stage-3 settings stay
    assert Settings.for_model(shapes, preset='paper', embed_steps=7).embed_steps == 7  # the caller wins
    with pytest.raises(ValueError, match='unknown preset'):
        Settings.for_model(shapes, preset='turbo')
    assert Settings.for_model(None, preset='paper').finetune_lr == 5e-7  # no model: the paper's own learning rates


def test_lora_under_autocast_keeps_frozen_weights_in_the_pipeline_dtype(tiny_path, image):
    "A half-precision pipeline (bf16 here; fp16 on CUDA): LoRA trains float32 adapters over frozen half-precision weights."
    half = imagic.load_pipeline(tiny_path, device='cpu', dtype=torch.bfloat16)
    lat, e = imagic.encode_image(half, image), imagic.encode_text(half, 'a blue circle')
    before = imagic.evaluation_loss(half, lat, e)
    seen = {}
    def spy(step, loss, unet):
        seen['frozen'] = {p.dtype for p in unet.parameters() if not p.requires_grad}
        seen['trained'] = {p.dtype for p in unet.parameters() if p.requires_grad}
    u, _ = imagic.finetune(half, lat, e, steps=30, lr=1e-2, method='lora', lora_rank=4, mixed_precision='bf16',
                           progress=False, callback=spy)
    assert seen == {'frozen': {torch.bfloat16}, 'trained': {torch.float32}}
    assert u.dtype == torch.bfloat16 and imagic.evaluation_loss(half, lat, e, unet=u) < before
