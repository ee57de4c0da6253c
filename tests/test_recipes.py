"""The recipes that followed the paper, as `Settings` fields, seen from outside: on every family where they apply,
refused in one line where they do not, recorded by states and reproduced bit for bit."""
import numpy as np
import pytest
import torch

import imagic
from imagic.testing import save_tiny_sd3_model

QUICK = dict(sample_steps=3, etas=(0.5, 1.0), seeds=(0,))
RECIPE = dict(embed_steps=2, embed_lr=1e-2, joint_steps=4, joint_batch=2, joint_embed_lr=1e-2, joint_lr=1e-3,
              finetune_steps=3, finetune_lr=1e-3, finetune_parts='decoder', lr_schedule='cosine', timestep_range=(0.1, 0.9),
              forget='encoder', mix_weight=0.5, edit_rule='project', late_eta=0.2, late_range=(0.0, 0.4), **QUICK)


@pytest.fixture(scope='module')
def sd3(tmp_path_factory):
    return imagic.load_pipeline(save_tiny_sd3_model(tmp_path_factory.mktemp('m') / 'sd3'), device='cpu')


def test_a_recipe_is_recorded_by_the_state_and_reproduced_bit_for_bit(pipe, image, tmp_path):
    a = imagic.Imagic(pipe, **RECIPE)
    a.fit(image, 'a blue circle', progress=False)
    assert a.state.settings['joint_steps'] == 4 and a.state.settings['forget'] == 'encoder' and a.state.settings['late_eta'] == 0.2
    assert len(a.state.finetune_losses) == 4 + 3  # the joint stage's, then stage 2's
    # only the decoder trained: the state holds up-block weights only
    assert a.state.unet_weights and all(k.startswith('up_blocks.') for k in a.state.unet_weights)
    first = a.edit(progress=False)
    back = imagic.Imagic.load(pipe, a.save(tmp_path / 'r.safetensors'))
    assert back.settings == a.settings
    again = back.edit(progress=False)
    for eta in first:
        assert np.array_equal(np.asarray(first[eta][0]), np.asarray(again[eta][0]))
    b = imagic.Imagic(pipe, **RECIPE)
    b.fit(image, 'a blue circle', progress=False)
    assert b.state.finetune_losses == a.state.finetune_losses
    assert torch.equal(b.state.e_opt, a.state.e_opt)


def test_recipe_fields_on_a_flow_family(sd3, image):
    "A joint stage, attention-only training, timestep ranges, projection and mixing work on SD3; the UNet halves are refused."
    s = imagic.Settings.for_model(sd3, embed_steps=0, finetune_steps=2, finetune_lr=1e-3, joint_steps=3, joint_lr=1e-3,
                                  finetune_parts='attention', timestep_range=(0.2, 0.8), edit_rule='project', mix_weight=0.5,
                                  late_eta=0.0, **QUICK)
    ed = imagic.Imagic(sd3, s)
    ed.fit(image, 'a blue circle', progress=False)
    assert all('attn' in k for k in ed.state.unet_weights)
    assert len(ed.edit(progress=False)[1.0]) == 1
    for field, value in (('forget', 'encoder'), ('finetune_parts', 'decoder'), ('forget', 'all_but_cross_kv')):
        with pytest.raises(ValueError, match=f"{field}='{value}' does not apply to Stable Diffusion 3"):
            imagic.Settings.for_model(sd3, **{field: value})


def test_stopping_caps_the_fit(pipe, image):
    s = dict(embed_steps=50, embed_lr=1e-2, finetune_steps=50, finetune_lr=1e-3, stop_loss=100.0, stop_window=5, **QUICK)
    ed = imagic.Imagic(pipe, **s)
    ed.fit(image, 'a blue circle', progress=False)
    assert len(ed.state.embed_losses) == 5 and len(ed.state.finetune_losses) == 5
