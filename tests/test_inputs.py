"""Loading pipelines and images: the formats users bring and the errors they should get."""
import io

import numpy as np
import pytest
import torch
from PIL import Image

import imagic
from imagic.core import MIN_IMAGE_SIDE


def test_load_pipeline_reads_configs(pipe):
    assert type(pipe.scheduler).__name__ == 'DDIMScheduler'
    assert pipe.safety_checker is None
    assert pipe.vae.config.scaling_factor == 0.5  # tiny model: deliberately not 0.18215
    assert imagic.image_size(pipe) == 32


def test_encode_uses_the_configured_scaling_factor(pipe, image):
    z = imagic.encode_image(pipe, image)
    raw = pipe.vae.encode(image[None] * 2 - 1).latent_dist.mean
    assert torch.allclose(z, raw * 0.5)


def test_unknown_models(tmp_path):
    with pytest.raises(FileNotFoundError, match='unknown model'):
        imagic.load_pipeline(tmp_path / 'missing', device='cpu')
    with pytest.raises(ValueError, match='model_index.json'):
        imagic.load_pipeline(tmp_path, device='cpu')


def _png(img, path):
    img.save(path); return path


@pytest.mark.parametrize('mode', ['L', 'RGBA', 'P', 'CMYK', 'LA', 'I;16', '1'])
def test_image_modes_become_rgb(tmp_path, mode):
    base = Image.new('RGB', (40, 30), (200, 100, 50))
    img = base.convert(mode) if mode != 'I;16' else Image.fromarray(np.full((30, 40), 40000, dtype=np.uint16))
    path = tmp_path / f'im.{"jpg" if mode == "CMYK" else "png"}'
    img.save(path)
    x = imagic.load_image(path, 32)
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    if mode == 'I;16':
        assert abs(x.mean().item() - 40000 / 65535) < 0.01


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new('RGB', (64, 32), (255, 255, 255))
    img.paste((255, 0, 0), (0, 0, 32, 32))  # red on the left half
    exif = Image.Exif(); exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / 'rot.jpg'
    img.save(path, exif=exif.tobytes(), quality=95)
    x = imagic.load_image(path, 32)
    upright = imagic.core.open_image(path)
    assert upright.size == (32, 64)  # portrait after orientation
    assert upright.getpixel((16, 8))[0] > 200 and upright.getpixel((16, 8))[1] < 60  # red ends up on top


def test_non_square_is_centre_cropped():
    img = Image.new('RGB', (90, 30), (0, 0, 255))
    img.paste((255, 0, 0), (30, 0, 60, 30))  # red centre square between blue sides
    x = imagic.load_image(img, 32)
    assert x[0].mean() > 0.95 and x[2].mean() < 0.05


def test_bad_image_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='no such image'):
        imagic.load_image(tmp_path / 'nope.png', 32)
    (tmp_path / 'text.png').write_text('not an image at all')
    with pytest.raises(ValueError, match='not an image'):
        imagic.load_image(tmp_path / 'text.png', 32)
    buf = io.BytesIO(); Image.new('RGB', (64, 64), (10, 20, 30)).save(buf, 'PNG')
    (tmp_path / 'trunc.png').write_bytes(buf.getvalue()[:len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match='truncated or corrupt'):
        imagic.load_image(tmp_path / 'trunc.png', 32)
    _png(Image.new('RGB', (MIN_IMAGE_SIDE - 1, 100)), tmp_path / 'small.png')
    with pytest.raises(ValueError, match='at least'):
        imagic.load_image(tmp_path / 'small.png', 32)
    with pytest.raises(ValueError, match='folder'):
        imagic.load_image(tmp_path, 32)


def test_decompression_bomb_is_refused(tmp_path, monkeypatch):
    _png(Image.new('L', (200, 200)), tmp_path / 'big.png')
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 1000)
    with pytest.raises(ValueError, match='decompression bomb'):
        imagic.load_image(tmp_path / 'big.png', 32)


def test_text_encoding(pipe):
    assert imagic.encode_text(pipe, 'ünïcödé — 東京').shape == (1, 77, 32)
    with pytest.warns(UserWarning, match='truncated'):
        imagic.encode_text(pipe, 'long ' * 200)
    with pytest.raises(ValueError):
        imagic.encode_text(pipe, 3)
