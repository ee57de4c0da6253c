"""Imagic end to end on the bundled model: fit one image to a target text, then write an η × seed grid of PNGs.

    python examples/quickstart.py --out out/

The input is a small red circle near the top left of a white picture; the target text asks for a blue
circle. The edits should be blue circles where the red one was, of the same size. Any diffusers model
works with --model (a local folder or a hub id), with the paper's settings unless it ships its own.
"""
import argparse
import json
import time
from pathlib import Path

from PIL import Image

import imagic
from imagic.shapes_world import Scene, render


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='out', help='output folder (default: out)')
    ap.add_argument('--model', default='shapes', help="bundled model name, diffusers folder or hub id (default: shapes)")
    ap.add_argument('--image', default=None, help='input image (default: a rendered red circle)')
    ap.add_argument('--text', default='a blue circle on a white background', help='target text')
    args = ap.parse_args(argv)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    pipe = imagic.load_pipeline(args.model)
    editor = imagic.Imagic(pipe)
    image = Image.open(args.image) if args.image else Image.fromarray(render(Scene('circle', 'red', 'white', 0.3, 0.32, 0.3), 32))
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
    (out / 'run.json').write_text(json.dumps({'model': args.model, 'text': args.text, 'settings': editor.settings.to_dict(),
                                              'fit_s': round(t1 - t0, 2), 'edit_s': round(t2 - t1, 2)}, indent=2))
    print(f'fit {t1 - t0:.1f} s, edit {t2 - t1:.1f} s; wrote {sum(len(r) for r in edits.values())} edits to {out}/')


if __name__ == '__main__':
    main()
