"""Shared fixtures: tiny random SD-format models built offline and loaded through `imagic.load_pipeline`."""
import pytest
import torch
from PIL import Image

import imagic
from imagic.testing import save_tiny_model


@pytest.fixture(scope='session')
def tiny_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp('models') / 'tiny-eps')


@pytest.fixture(scope='session')
def tiny_v_path(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp('models') / 'tiny-v', prediction_type='v_prediction', seed=3)


@pytest.fixture(scope='session')
def pipe(tiny_path):
    return imagic.load_pipeline(tiny_path, device='cpu')


@pytest.fixture(scope='session')
def image():
    "A small picture: a red disc off-centre on white, as a (3, 32, 32) tensor."
    img = Image.new('RGB', (32, 32), (255, 255, 255))
    for x in range(32):
        for y in range(32):
            if (x - 10) ** 2 + (y - 12) ** 2 < 36: img.putpixel((x, y), (220, 30, 30))
    return imagic.load_image(img, 32)


@pytest.fixture(scope='session')
def fitted(pipe, image):
    "Stages 1-2 on the tiny model, with learning rates large enough to move a random model in few steps."
    latents = imagic.encode_image(pipe, image)
    e_tgt = imagic.encode_text(pipe, 'a blue circle on a white background')
    e_opt, l1 = imagic.optimize_embedding(pipe, latents, e_tgt, steps=40, lr=2e-2, progress=False)
    unet, l2 = imagic.finetune(pipe, latents, e_opt, steps=40, lr=1e-3, progress=False)
    return dict(latents=latents, e_tgt=e_tgt, e_opt=e_opt, unet=unet, l1=l1, l2=l2)
