"""Imagic end to end on the bundled model: fit one image to a target text, then write an η × seed grid of PNGs.

    python examples/quickstart.py --out out/

The input is a red bird standing on a sky background, facing left, with a white breast patch; the target
text asks for the same bird spreading its wings — a non-rigid edit. The edits should show that bird, wings
spread, where it stood, as big, facing the same way, with its patch (the probe's verdict per image is in
run.json). Any diffusers model works with --model (a local folder or a hub id), with the paper's settings
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
    ap.add_argument('--image', default=None, help='input image (default: a rendered red bird)')
    ap.add_argument('--text', default=None, help="target text (default: 'a red bird spreading its wings on a sky background')")
    args = ap.parse_args(argv)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    pipe = imagic.load_pipeline(args.model)
    editor = imagic.Imagic(pipe)
    scene = Scene('standing', 'red', 'sky', 'none', cx=0.44, cy=0.55, size=0.36, facing='left', patch='white', texture='plain')
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
