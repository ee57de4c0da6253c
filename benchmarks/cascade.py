"""The cascade on the bundled world: does fine-tuning the super-resolution model on the input keep its fine detail?

    python benchmarks/cascade.py --choose    # upscaler fine-tuning settings on validation edits; the best within 60 s/edit stored
    python benchmarks/cascade.py --paper     # the paper's 1500 steps on the validation edits: what they give (a GPU job)
    python benchmarks/cascade.py             # held-out edits: fine texture kept by the fine-tuned vs the pretrained upscaler

Every step stores JSON lines and reuses them when rerun: an interrupted run goes on where it stopped (`--shard i/n`
runs every n-th edit, so that two processes can share the work), and the tutorial reads the same files.

Choosing (`--choose`) isolates the upscaler: its base edit is the ideal one, the edit's target scene rendered at
64 px, so no base-model fit is needed. The rule: the most images that keep both the input's texture and the edit
(the asked attribute, every other one) — an upscaler fine-tuned too hard keeps the texture and paints the input's
colour and background back over a colour or background edit. The held-out run is the whole cascade: Imagic's base edits (the model's
recommended settings at the middle recommended η, its four seeds) upsampled by both upscalers with the same seeds.
The stored run (`nbs/world/08_cascade.jsonl`) has the bundled models' recommended settings (900 fine-tuning steps, η 0.9;
the upscaler's 100 steps at 5e-5, chosen by --choose for the previous upscaler of the world without details).
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagic import load_pipeline
from imagic.cascade import fit_upscaler, upscale_factor, upscale_with
from imagic.core import (DEFAULT_MODEL, DEFAULT_UPSCALER, Settings, append_jsonl, encode_text, image_size, read_jsonl, resolve_model,
                         store_settings)
from imagic.world import EDIT_KINDS, cascade_rates, heldout_edits, judge, render, run_edits, validation_edits
from imagic.world.edits import edit_input, scene_dict
from imagic.state import model_fingerprint, results_key

HERE = Path(__file__).resolve().parent.parent / 'nbs' / 'world'
BUDGET_S = 60  # the bound on the upscaler's fine-tuning per edit, on this CPU
# what --choose tries: (name, upscaler_* overrides); steps 0 is the untouched upscaler
SAMPLING = dict(upscaler_sample_steps=25, upscaler_guidance_scale=1.0)
# the paper's 1500 steps (Imagen's 64 -> 256 model) at the learning rates tried above: about 8 min an edit on a 2-core CPU
PAPER = [(f'full 1500 @ {lr}', dict(upscaler_steps=1500, upscaler_lr=float(lr))) for lr in ('1e-4', '3e-4')]
CANDIDATES = [('pretrained', dict(upscaler_steps=0)),
              ('full 50 @ 3e-4', dict(upscaler_steps=50, upscaler_lr=3e-4)),
              ('full 100 @ 1e-4', dict(upscaler_steps=100, upscaler_lr=1e-4)),
              ('full 100 @ 5e-5', dict(upscaler_steps=100, upscaler_lr=5e-5))]
# for the previous upscaler (the world without details), the first choice, made on the texture alone, was 100 steps at 3e-4: on
# held-out edits it painted the input's colour or background back over most colour and background edits, hence the rule above


def upscaler_trial(base, up, edit, settings, seeds=(0, 1, 2, 3)) -> dict:
    "Fine-tune `up` on the edit's input (256 px and its 64 px version) with `settings`, upsample the ideal base edit (the target scene at 64 px) with `seeds`; per image, the texture kept (`fine`) and the edit kept (`both`), and the seconds."
    x_full, x = edit_input(edit, image_size(base), upscale_factor(up))
    t0 = time.perf_counter()
    if settings.upscaler_steps: unet, losses, e_up = fit_upscaler(up, x_full, x, edit.text, settings, progress=False)
    else: unet, losses, e_up = up.unet, [], encode_text(up, edit.text)
    fit_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    ims = upscale_with(up, [Image.fromarray(render(edit.target, image_size(base)))] * len(seeds), e_up, seeds, settings, unet=unet)
    sample_s = time.perf_counter() - t1
    verdicts = [judge(edit, im) for im in ims]
    return dict(fine=[bool(v['fine']) for v in verdicts], both=[bool(v['both']) for v in verdicts], fit_s=fit_s, sample_s=sample_s,
                loss_first=float(np.mean(losses[:10])) if losses else None, loss_last=float(np.mean(losses[-10:])) if losses else None)


def trials(base, up, edits, candidates, records, shard=(0, 1)) -> dict:
    "Run (or read back from `records`) every (edit, candidate) trial: name -> list of trial dicts in edit order."
    done = {d['key']: d for d in read_jsonl(records)}
    up_id = model_fingerprint(up)  # the trials upsample the ideal base edit: the base model's weights play no part
    out = {}
    for name, over in candidates:
        # not the upscaler's stored settings: what --choose stores must not change the candidates (and their records' keys)
        s = Settings.for_model(base, **{**SAMPLING, **over})
        out[name] = []
        for i, e in enumerate(edits):
            key = results_key([scene_dict(e.source), scene_dict(e.target), e.kind, s.to_dict()], up_id)
            if key not in done:
                if i % shard[1] != shard[0]: continue
                done[key] = dict(key=key, name=name, kind=e.kind, device=str(base.unet.device), **upscaler_trial(base, up, e, s))
                append_jsonl(records, done[key])
                print(f"{name} #{i} {e.kind}: texture {sum(done[key]['fine'])}/4, edit {sum(done[key]['both'])}/4, fit {done[key]['fit_s']:.0f} s", flush=True)
            out[name].append(done[key])
    return out


def summary(results) -> list:
    return [dict(name=name, edits=len(rs), fine=float(np.mean([f for r in rs for f in r['fine']])),
                 both=float(np.mean([b for r in rs for b in r['both']])),
                 fine_both=float(np.mean([f and b for r in rs for f, b in zip(r['fine'], r['both'])])),
                 fine_edits=float(np.mean([sum(r['fine']) * 2 > len(r['fine']) for r in rs])),
                 fit_s=float(np.mean([r['fit_s'] for r in rs])), sample_s=float(np.mean([r['sample_s'] for r in rs])))
            for name, rs in results.items() if rs]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=DEFAULT_MODEL)
    ap.add_argument('--upscaler', default=DEFAULT_UPSCALER)
    ap.add_argument('--choose', action='store_true', help='try the candidate settings on validation edits and store the best')
    ap.add_argument('--paper', action='store_true', help="the paper's 1500 steps on the validation edits")
    ap.add_argument('--device', default='cpu', help='where to run (the models load in float32 there)')
    ap.add_argument('--validation', type=int, default=16)
    ap.add_argument('--edits', type=int, default=24, help='held-out edits (cycling through the kinds: 24 = 6 per kind)')
    ap.add_argument('--eta', type=float, default=None, help="the base edits' η (default: the middle of the base model's recommended etas)")
    ap.add_argument('--shard', default='0/1', help='i/n: run every n-th edit starting at i (records are shared)')
    ap.add_argument('--records', default=None)
    ap.add_argument('--threads', type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    shard = tuple(int(v) for v in args.shard.split('/'))
    base = load_pipeline(args.model, device=args.device, dtype=torch.float32)
    up = load_pipeline(args.upscaler, device=args.device, dtype=torch.float32)
    if args.choose or args.paper:
        records = args.records or HERE / '08_upscaler_sweep.jsonl'
        edits = validation_edits(args.validation)
        cands = PAPER if args.paper else CANDIDATES
        rows = summary(trials(base, up, edits, cands, records, shard))
        for r in rows: print(f"{r['name']}: texture kept on {r['fine']:.0%} of images ({r['fine_edits']:.0%} of edits), the edit on "
                             f"{r['both']:.0%}, both on {r['fine_both']:.0%}; fit {r['fit_s']:.1f} s, 4 upsamples {r['sample_s']:.1f} s ({r['edits']} edits)")
        if args.choose and all(r['edits'] == len(edits) for r in rows):
            ok = [r for r in rows if r['fit_s'] <= BUDGET_S and r['name'] != 'pretrained']
            best = max(ok, key=lambda r: (r['fine_both'], -r['fit_s']))
            over = {**SAMPLING, **dict(CANDIDATES)[best['name']]}
            print('chosen:', best['name'], over, '->', store_settings(resolve_model(args.upscaler), over))
        return
    s = Settings.for_model(base, upscaler=up)
    if args.eta is None: args.eta = s.etas[len(s.etas) // 2]
    edits = heldout_edits(args.edits)
    records = args.records or HERE / '08_cascade.jsonl'
    mine = [e for i, e in enumerate(edits) if i % shard[1] == shard[0]]
    run_edits(base, mine, s, etas=(args.eta,), seeds=s.seeds, ablation=False, records=records, upscaler=up)
    if shard[1] > 1: return
    recs = run_edits(base, edits, s, etas=(args.eta,), seeds=s.seeds, ablation=False, records=records, upscaler=up, progress=False)
    rows = [cascade_rates(recs)] + [cascade_rates(recs, k) for k in EDIT_KINDS]
    print(json.dumps({k: v for k, v in s.to_dict().items() if k.startswith('upscaler_')}))
    print('| edits | n | texture kept: pretrained | fine-tuned | edits (most seeds): pretrained | fine-tuned | base edit right at 64 px | after pretrained | after fine-tuned |')
    print('|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['kind']} | {r['edits']} | {r['fine_pretrained']:.0%} | {r['fine_finetuned']:.0%} | {r['fine_pretrained_edits']:.0%} | "
              f"{r['fine_finetuned_edits']:.0%} | {r['both_base']:.0%} | {r['both_pretrained']:.0%} | {r['both_finetuned']:.0%} |")
    a = rows[0]
    print(f"images only the fine-tuned upscaler keeps: {a['images_only_first']}, only the pretrained: {a['images_only_second']}, "
          f"sign-test p = {a['images_p']:.2g}")
    print(f"seconds per edit: base fit {a['fit_s']:.1f}, base samples {a['finetuned_sample_s']:.1f}, upscaler fit {a['upscaler_fit_s']:.1f}, "
          f"upsampling (fine-tuned) {a['upscaled_sample_s']:.1f}, (pretrained) {a['upscaled_pretrained_sample_s']:.1f}")


if __name__ == '__main__':
    main()
