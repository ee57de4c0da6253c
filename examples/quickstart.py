"""Imagic end to end on the default model: fit one image to a target text, then write an η × seed grid of PNGs.

    python examples/quickstart.py --out out/

Uses the bundled `shapes` model when it is installed; until then, a tiny random stand-in model built
offline by `imagic.testing` (it exercises every step but draws noise, not pictures).
"""
import argparse
import json
import time
from pathlib import Path

from PIL import Image, ImageDraw

import imagic
from imagic.core import BUNDLED_MODELS
from imagic.testing import save_tiny_model


def demo_input(size=64) -> Image.Image:
    "A small red circle in the top-left corner of a white picture."
    img = Image.new('RGB', (size, size), 'white')
    ImageDraw.Draw(img).ellipse([size * 0.1, size * 0.1, size * 0.4, size * 0.4], fill=(220, 30, 30))
    return img


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='out', help='output folder (default: out)')
    ap.add_argument('--text', default='a blue circle on a white background', help='target text')
    args = ap.parse_args(argv)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    if (BUNDLED_MODELS['shapes'] / 'model_index.json').exists():
        model, overrides = 'shapes', {}
    else:
        model = save_tiny_model(out / 'tiny-model')
        overrides = dict(embed_steps=20, embed_lr=2e-2, finetune_steps=20, finetune_lr=1e-3, sample_steps=10)
        print(f'bundled model not installed: using the tiny random stand-in at {model}')
    pipe = imagic.load_pipeline(model)
    editor = imagic.Imagic(pipe, **overrides)
    image = demo_input()
    image.save(out / 'input.png')
    t0 = time.perf_counter()
    editor.fit(image, args.text)
    t1 = time.perf_counter()
    edits = editor.edit()
    t2 = time.perf_counter()
    for eta, row in edits.items():
        for seed, im in row.items():
            im.save(out / f'edit_eta{eta:.2f}_seed{seed}.png')
    editor.save(out / 'state.safetensors')
    (out / 'run.json').write_text(json.dumps({'model': str(model), 'text': args.text, 'settings': editor.settings.to_dict(),
                                              'fit_s': round(t1 - t0, 2), 'edit_s': round(t2 - t1, 2)}, indent=2))
    print(f'fit {t1 - t0:.1f} s, edit {t2 - t1:.1f} s; wrote {sum(len(r) for r in edits.values())} edits to {out}/')


if __name__ == '__main__':
    main()
