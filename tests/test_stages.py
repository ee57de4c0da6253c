"""The three stages seen from outside, on the tiny random model."""
import copy

import numpy as np
import pytest
import torch

import imagic
from imagic.core import draw_noise, make_generator


def test_stage1_lowers_loss_and_stays_near_target(pipe, fitted):
    before = imagic.evaluation_loss(pipe, fitted['latents'], fitted['e_tgt'])
    after = imagic.evaluation_loss(pipe, fitted['latents'], fitted['e_opt'])
    assert after < before, (before, after)  # the evaluation set is fixed: any drop is real, not noise
    rel = ((fitted['e_opt'] - fitted['e_tgt']).norm() / fitted['e_tgt'].norm()).item()
    assert 0 < rel < 0.5
    assert fitted['e_opt'].shape == fitted['e_tgt'].shape == (1, 77, 32)
    assert len(fitted['l1']) == 40


def test_stage1_computes_no_weight_gradients(pipe, image):
    latents = imagic.encode_image(pipe, image)
    e = imagic.encode_text(pipe, 'x')
    imagic.optimize_embedding(pipe, latents, e, steps=2, lr=1e-2, progress=False)
    assert all(p.grad is None and not p.requires_grad for p in pipe.unet.parameters())


def test_stage2_lowers_loss_further_and_leaves_pretrained_untouched(pipe, fitted, tiny_path):
    after1 = imagic.evaluation_loss(pipe, fitted['latents'], fitted['e_opt'])
    after2 = imagic.evaluation_loss(pipe, fitted['latents'], fitted['e_opt'], unet=fitted['unet'])
    assert after2 < after1 * 0.95, (after1, after2)
    fresh = imagic.load_pipeline(tiny_path, device='cpu')  # the weights on disk are the pretrained ones
    for (k, a), (_, b) in zip(pipe.unet.state_dict().items(), fresh.unet.state_dict().items()):
        assert torch.equal(a, b), k
    assert fitted['unet'] is not pipe.unet
    assert any(not torch.equal(a, b) for a, b in zip(pipe.unet.parameters(), fitted['unet'].parameters()))


def test_stages_are_seeded_and_ignore_global_random_state(pipe, fitted):
    lat, e = fitted['latents'], fitted['e_tgt']
    torch.manual_seed(1); a, la = imagic.optimize_embedding(pipe, lat, e, steps=3, lr=1e-2, progress=False)
    torch.manual_seed(2); b, lb = imagic.optimize_embedding(pipe, lat, e, steps=3, lr=1e-2, progress=False)
    assert torch.equal(a, b) and la == lb
    c, _ = imagic.optimize_embedding(pipe, lat, e, steps=3, lr=1e-2, progress=False, generator=make_generator('cpu', 7))
    assert not torch.equal(a, c)
    u1, _ = imagic.finetune(pipe, lat, a, steps=2, lr=1e-3, progress=False)
    u2, _ = imagic.finetune(pipe, lat, a, steps=2, lr=1e-3, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(u1.parameters(), u2.parameters()))


def test_loss_reads_timesteps_from_config(pipe, fitted):
    T = pipe.scheduler.config.num_train_timesteps
    assert T == 500  # the tiny model deliberately differs from SD's 1000
    _, t = draw_noise(fitted['latents'], T, make_generator('cpu'), 4096)
    assert t.max().item() == T - 1 and t.min().item() == 0


def test_interpolate_endpoints(fitted):
    e_tgt, e_opt = fitted['e_tgt'], fitted['e_opt']
    assert torch.allclose(imagic.interpolate(e_tgt, e_opt, 0), e_opt)
    assert torch.allclose(imagic.interpolate(e_tgt, e_opt, 1), e_tgt)
    with pytest.warns(UserWarning, match='outside'):
        imagic.interpolate(e_tgt, e_opt, 1.2)
    for bad in (float('nan'), float('inf'), 'abc', None):
        with pytest.raises(ValueError):
            imagic.interpolate(e_tgt, e_opt, bad)


def _arr(im): return np.asarray(im, dtype=np.int16)


def test_same_seed_same_image_different_seeds_differ(pipe, fitted):
    e = imagic.interpolate(fitted['e_tgt'], fitted['e_opt'], 0.7)
    a = imagic.generate(pipe, e, [5, 6], unet=fitted['unet'], steps=6, progress=False)[0]
    b = imagic.generate(pipe, e, [5], unet=fitted['unet'], steps=6, progress=False)[0]
    assert np.abs(_arr(a[0]) - _arr(b[0])).max() <= 1
    assert np.abs(_arr(a[0]) - _arr(a[1])).mean() > 1


def test_batched_generation_equals_one_by_one(pipe, fitted):
    embs = [imagic.interpolate(fitted['e_tgt'], fitted['e_opt'], eta) for eta in (0.2, 0.9)]
    seeds = [0, 3, 11]
    grid = imagic.generate(pipe, embs, seeds, unet=fitted['unet'], steps=6, progress=False)
    chunked = imagic.generate(pipe, embs, seeds, unet=fitted['unet'], steps=6, progress=False, batch_size=4)
    for i, e in enumerate(embs):
        for j, s in enumerate(seeds):
            alone = imagic.generate(pipe, e, s, unet=fitted['unet'], steps=6, progress=False)[0][0]
            assert np.abs(_arr(alone) - _arr(grid[i][j])).max() <= 1
            assert np.abs(_arr(chunked[i][j]) - _arr(grid[i][j])).max() <= 1


def test_fine_tuned_and_pretrained_models_sample_differently(pipe, fitted):
    e = fitted['e_opt']
    a = imagic.generate(pipe, e, 0, steps=6, progress=False)[0][0]
    b = imagic.generate(pipe, e, 0, unet=fitted['unet'], steps=6, progress=False)[0][0]
    assert np.abs(_arr(a) - _arr(b)).mean() > 0.5


def test_v_prediction_model(tiny_v_path, image):
    pipe = imagic.load_pipeline(tiny_v_path, device='cpu')
    assert pipe.scheduler.config.prediction_type == 'v_prediction'
    lat = imagic.encode_image(pipe, image)
    e_tgt = imagic.encode_text(pipe, 'a green square')
    e_opt, _ = imagic.optimize_embedding(pipe, lat, e_tgt, steps=30, lr=2e-2, progress=False)
    unet, _ = imagic.finetune(pipe, lat, e_opt, steps=30, lr=1e-3, progress=False)
    l0 = imagic.evaluation_loss(pipe, lat, e_tgt)
    l1 = imagic.evaluation_loss(pipe, lat, e_opt)
    l2 = imagic.evaluation_loss(pipe, lat, e_opt, unet=unet)
    assert l2 < l1 < l0, (l0, l1, l2)
    ims = imagic.generate(pipe, e_opt, [0], unet=unet, steps=4, progress=False)
    assert ims[0][0].size == (32, 32)


def test_half_precision_pipeline_keeps_float32_training(tiny_path, image):
    pipe = imagic.load_pipeline(tiny_path, device='cpu', dtype=torch.bfloat16)
    lat = imagic.encode_image(pipe, image)
    e_tgt = imagic.encode_text(pipe, 'a red circle')
    e_opt, losses = imagic.optimize_embedding(pipe, lat, e_tgt, steps=3, lr=1e-2, progress=False)
    assert e_opt.dtype == torch.bfloat16 and all(np.isfinite(losses))
    unet, l2 = imagic.finetune(pipe, lat, e_opt, steps=3, lr=1e-3, progress=False)
    assert unet.dtype == torch.bfloat16 and pipe.unet.dtype == torch.bfloat16 and all(np.isfinite(l2))


def test_bad_stage_arguments(pipe, fitted):
    lat, e = fitted['latents'], fitted['e_tgt']
    with pytest.raises(ValueError, match='steps'):
        imagic.optimize_embedding(pipe, lat, e, steps=-1, progress=False)
    with pytest.raises(ValueError, match='e_tgt'):
        imagic.optimize_embedding(pipe, lat, e[0], steps=1, progress=False)
    with pytest.raises(ValueError, match='latents'):
        imagic.finetune(pipe, lat[0], e, steps=1, progress=False)
    with pytest.raises(ValueError, match='seed'):
        imagic.generate(pipe, e, [], steps=2, progress=False)
    with pytest.raises(ValueError, match='seeds'):
        imagic.generate(pipe, e, [-1], steps=2, progress=False)


def test_lora_adapters_start_from_the_stage_generator_not_the_global_rng(pipe, fitted):
    lat, e = fitted['latents'], fitted['e_opt']
    torch.manual_seed(1); u1, _ = imagic.finetune(pipe, lat, e, steps=2, lr=1e-3, method='lora', progress=False)
    torch.manual_seed(2); u2, _ = imagic.finetune(pipe, lat, e, steps=2, lr=1e-3, method='lora', progress=False)
    assert all(torch.equal(p, q) for p, q in zip(u1.parameters(), u2.parameters()))
    torch.manual_seed(3); before = torch.rand(4); torch.manual_seed(3)
    imagic.finetune(pipe, lat, e, steps=1, lr=1e-3, method='lora', progress=False)
    assert torch.equal(torch.rand(4), before)  # the global random state is left as it was
    u3, _ = imagic.finetune(pipe, lat, e, steps=2, lr=1e-3, method='lora', progress=False, generator=make_generator('cpu', 5))
    assert any(not torch.equal(p, q) for p, q in zip(u1.parameters(), u3.parameters()))
