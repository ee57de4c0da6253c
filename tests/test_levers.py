"""The speed and memory levers of stages 1-2 and the named presets: each still edits correctly on the bundled model."""
import pytest
import torch

import imagic
from imagic.core import Settings
from dataclasses import replace

from imagic.world import Edit, Scene, judge, render


@pytest.fixture(scope='module')
def birds():
    return imagic.load_pipeline(device='cpu')


SRC = Scene('standing', 'red', 'sand', 'hat', cx=0.57, cy=0.7, size=0.36, facing='left', patch='none', texture='vstripes',
            marks=((-0.31, 0.06, 'pink'), (-0.03, 0.11, 'pink')), clutter=((0.39, 0.21, 'teal'), (0.09, 0.43, 'grey'), (0.12, 0.11, 'teal')))
EDIT = Edit(SRC, replace(SRC, colour='blue'), 'colour')


def _edit_succeeds(pipe, settings):
    editor = imagic.Imagic(pipe, settings)
    editor.fit(torch.from_numpy(render(SRC)).permute(2, 0, 1).float() / 255, EDIT.text, progress=False)
    assert editor.state.unet_weights, 'stage 2 changed nothing'
    eta = settings.etas[len(settings.etas) // 2]
    ims = editor.edit(eta, progress=False)[eta]
    verdicts = [judge(EDIT, im) for im in ims.values()]
    assert any(v['both'] for v in verdicts), verdicts
    return editor


# LoRA on every convolution and linear layer is the birds model's `fast` preset (test below); LoRA on the attention
# projections alone is only checked for its structure here.
LORA = dict(finetune_method='lora', lora_rank=8, finetune_lr=1e-3, finetune_steps=300)
LEVERS = {  # each lever on the recommended settings (fewer fine-tuning steps than the recommended 900 do not keep the marks and pebbles)
    'several samples per step': dict(finetune_batch=4, finetune_steps=300),  # 4 × 300 samples: as many as the recommended 900
    'gradient checkpointing': dict(gradient_checkpointing=True),
    'bf16 autocast': dict(mixed_precision='bf16'),
    'bf16 sampling': dict(sample_precision='bf16'),
}


@pytest.mark.parametrize('name', list(LEVERS))
def test_each_lever_still_edits(birds, name):
    _edit_succeeds(birds, Settings.for_model(birds, **LEVERS[name]))


def test_lora_changes_only_attention_projections(birds):
    s = Settings.for_model(birds, **{**LORA, 'embed_steps': 5, 'finetune_steps': 5})
    editor = imagic.Imagic(birds, s)
    editor.fit(torch.from_numpy(render(SRC)).permute(2, 0, 1).float() / 255, EDIT.text, progress=False)
    keys = list(editor.state.unet_weights)
    assert keys and all(any(f'.{t}.' in k for t in ('to_q', 'to_k', 'to_v', 'to_out.0')) for k in keys), keys[:5]


def test_fast_preset_edits(birds):
    s = Settings.for_model(birds, preset='fast')  # the model's own 'fast' (LoRA on all layers, rank 16, 400 steps) refines the generic one
    assert (s.finetune_method, s.lora_targets, s.lora_rank) == ('lora', 'all', 16)
    assert s.finetune_steps < Settings.for_model(birds).finetune_steps
    editor = _edit_succeeds(birds, s)
    assert any('resnets' in k for k in editor.state.unet_weights)  # the convolutions moved too


def test_unknown_lora_targets_and_precisions_are_refused():
    with pytest.raises(ValueError, match='lora_targets'):
        Settings(lora_targets='convs')
    with pytest.raises(ValueError, match='sample_precision'):
        Settings(sample_precision='fp8')
    with pytest.raises(ValueError, match='mixed_precision'):
        Settings(mixed_precision='fp8')


def test_presets_compose_with_the_model_and_the_caller(birds):
    paper = Settings.for_model(birds, preset='paper')
    assert (paper.embed_steps, paper.finetune_steps, paper.finetune_batch, paper.finetune_method) == (1000, 1500, 1, 'full')
    assert paper.guidance_scale == Settings.for_model(birds).guidance_scale  # the model's stage-3 settings stay
    assert Settings.for_model(birds, preset='paper', embed_steps=7).embed_steps == 7  # the caller wins
    with pytest.raises(ValueError, match='unknown preset'):
        Settings.for_model(birds, preset='turbo')
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
