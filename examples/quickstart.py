"""Imagic end to end on the bundled model: fit one image to a target text, then write an η × seed grid of PNGs.

    python examples/quickstart.py --out out/

The input is a blue bird with a hat standing on a sand background, facing left, with two pink marks on its
body and three pebbles on the ground; the target text asks for the same bird spreading its wings — a non-rigid
edit. The edits should show that bird, wings spread, where it stood, as big, facing the same way, with its marks
and pebbles where they were (the probe's verdict per image is in run.json; not every seed and η succeeds). Any diffusers model works with --model (a local folder or a hub id), with the paper's settings
unless it ships its own.
"""
import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from PIL import Image

import imagic
from imagic.world import Edit, Scene, judge, render


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default='out', help='output folder (default: out)')
    ap.add_argument('--model', default=imagic.DEFAULT_MODEL, help=f"bundled model name, diffusers folder or hub id (default: {imagic.DEFAULT_MODEL})")
    ap.add_argument('--image', default=None, help='input image (default: a rendered blue bird)')
    ap.add_argument('--text', default=None, help="target text (default: 'a blue bird with a hat spreading its wings on a sand background')")
    args = ap.parse_args(argv)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    pipe = imagic.load_pipeline(args.model)
    editor = imagic.Imagic(pipe)
    scene = Scene('standing', 'blue', 'sand', 'hat', cx=0.57, cy=0.7, size=0.36, facing='left', patch='none', texture='vstripes',
                  marks=((-0.31, 0.06, 'pink'), (-0.03, 0.11, 'pink')), clutter=((0.39, 0.21, 'teal'), (0.09, 0.43, 'grey'), (0.12, 0.11, 'teal')))
    edit = None if args.image or args.text else Edit(scene, replace(scene, pose='wings'), 'pose')
    text = args.text or edit.text
    image = Image.open(args.image) if args.image else Image.fromarray(render(scene))
    image.save(out / 'input.png')
    t0 = time.perf_counter()
    editor.fit(image, text)
    t1 = time.perf_counter()
    edits = editor.edit()
    t2 = time.perf_counter()
    for eta, row in edits.items():
        for seed, im in row.items():
            im.save(out / f'edit_eta{eta:.2f}_seed{seed}.png')
    editor.save(out / 'state.safetensors')
    verdicts = {f'eta{eta:.2f}_seed{seed}': judge(edit, im) for eta, row in edits.items() for seed, im in row.items()} if edit else {}
    (out / 'run.json').write_text(json.dumps({'model': args.model, 'text': text, 'settings': editor.settings.to_dict(),
                                              'fit_s': round(t1 - t0, 2), 'edit_s': round(t2 - t1, 2), 'judged': verdicts}, indent=2))
    good = f"; {sum(v['both'] for v in verdicts.values())} of {len(verdicts)} spread the wings and keep the rest" if verdicts else ''
    print(f'fit {t1 - t0:.1f} s, edit {t2 - t1:.1f} s; wrote {sum(len(r) for r in edits.values())} edits to {out}/{good}')


if __name__ == '__main__':
    main()
