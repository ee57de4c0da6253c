"""Is a birds-world model as hard for img2img as photographs, and can Imagic still edit on it? (issue: the photo-hard world)

    python benchmarks/world_check.py --model FOLDER [--details | --no-details] [--edits 8] [--json out.json] [--records edits.jsonl]

On validation data only (fresh renders from `DETAIL_SEED`, `validation_edits`), with the model's recommended settings
(the bundled `birds` settings when the folder has none):
- the VAE's round trip keeps the unnamed identity (`vae_identity_kept`);
- `detail_survival`: SDEdit under the render's own caption, identity kept, per strength (the property the world needs:
  high at 0.3, low at 0.6);
- SDEdit toward the target caption on the validation pose edits: the asked pose reached, per strength (a non-rigid edit
  must need noise);
- text-to-image: the named attributes right and the spread of the details (`sample_quality`);
- Imagic with the recipe on `--edits` validation edits per kind (fine-tuned and pretrained at the same η and seeds),
  and which part of the identity the failures lose.
Every figure is printed and, with `--json`, stored; `--records` keeps each judged Imagic edit (an interrupted run resumes).
"""
import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np


def pose_reach(pipe, edits, strengths) -> dict:
    "SDEdit toward each edit's target caption, one seed: per strength, the share reaching the asked attribute, keeping the rest, both (`imagic.baselines.knob_sweep`'s figures over all the edits)."
    from imagic.baselines import knob_sweep
    rows = knob_sweep(pipe, 'sdedit', edits, values=strengths, seeds=(0,), progress=False)
    return {r['value']: {k: r[k] for k in ('attr', 'kept', 'both')} for r in rows if r['kind'] == 'all'}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', required=True, help='a birds-world diffusers folder')
    ap.add_argument('--details', action=argparse.BooleanOptionalAction, default=None,
                    help='the world with marks and clutter, or (--no-details) without (default: the world the model was trained on, its training log)')
    ap.add_argument('--edits', type=int, default=8, help='validation edits per kind for Imagic')
    ap.add_argument('--kinds', nargs='+', default=None, help='edit kinds for Imagic (default all; two processes can share them)')
    ap.add_argument('--survival', type=int, default=48, help='fresh renders for detail_survival')
    ap.add_argument('--samples', type=int, default=300, help='text-to-image samples')
    ap.add_argument('--skip', nargs='*', default=[], choices=['vae', 'survival', 'reach', 'samples', 'imagic'])
    ap.add_argument('--json', default=None)
    ap.add_argument('--records', default=None)
    args = ap.parse_args(argv)

    import imagic
    from imagic.core import BUNDLED_MODELS
    from imagic.baselines import METHODS
    from imagic.world import (EDIT_KINDS, detail_survival, probe, rates_table, run_edits, sample_quality, trained_on_details,
                              vae_identity_kept, validation_edits)
    from imagic.baselines import TRADEOFF_KNOBS
    from imagic.world.edits import kept_fields, stored_records
    folder = Path(args.model)
    if not (folder / 'imagic_settings.json').exists():  # a new model of the world starts from the bundled model's recipe
        shutil.copy(BUNDLED_MODELS['birds'] / 'imagic_settings.json', folder / 'imagic_settings.json')
    pipe = imagic.load_pipeline(str(folder), device='cpu')
    if args.details is None: args.details = trained_on_details(pipe)
    out = {'model': str(folder), 'details': args.details}
    def report(name, value):
        out[name] = value; print(f'{name}: {json.dumps(value)}', flush=True)
        if args.json: Path(args.json).write_text(json.dumps(out, indent=1))

    t0 = time.time()
    if 'vae' not in args.skip: report('vae_identity_kept', vae_identity_kept(pipe, n=200, details=args.details))
    if 'survival' not in args.skip:
        report('detail_survival', detail_survival(pipe, METHODS['sdedit'], (0.3, 0.4, 0.5, 0.6, 0.7), n=args.survival, details=args.details,
                                                  progress=False, per_field=True))
    edits = validation_edits(8 * len(EDIT_KINDS) * 2, details=args.details)
    if 'reach' not in args.skip:
        pose = [e for e in edits if e.kind == 'pose'][:16]
        report('sdedit_toward_target_pose', pose_reach(pipe, pose, (0.3, 0.4, 0.5, 0.6, 0.7)))
    if 'samples' not in args.skip:
        q = sample_quality(pipe, n=args.samples, progress=False)
        report('text_to_image', {k: v for k, v in q.items() if k not in ('images', 'captions', 'probes')})
    if 'imagic' not in args.skip:
        chosen = [e for k in (args.kinds or EDIT_KINDS) for e in [e for e in edits if e.kind == k][:args.edits]]
        s = imagic.Settings.for_model(pipe)
        # η over the trade-off curve's grid (and the recommended ones), so that the same records give the η choice,
        # the ablation and Imagic's curve in `knob_sweep`; an edit stored by an interrupted run is read back, not refitted
        etas = tuple(sorted(set(TRADEOFF_KNOBS['imagic'][1]) | set(s.etas)))
        recs = []
        for e in chosen:
            found = stored_records(args.records, pipe, [e], s, etas, s.seeds, True) if args.records else {}
            recs += list(found.values()) or run_edits(pipe, [e], s, etas=etas, seeds=s.seeds, ablation=True, progress=False,
                                                      keep_images=True, records=args.records)
            print(f"edit {len(recs)}/{len(chosen)} ({e.kind}): fit {recs[-1]['fit_s']:.0f} s", flush=True)
        mid = s.etas[len(s.etas) // 2]
        table = rates_table(recs, by_kind=True) + [dict(r, model='pretrained') for r in rates_table(recs, 'pretrained', by_kind=True)]
        out['imagic_rates'] = table
        both = lambda model, k: next(r['both'] for r in table if r['eta'] == mid and r['kind'] == k and r.get('model', 'finetuned') == model)
        report('imagic', {'settings': {k: v for k, v in s.to_dict().items() if k in ('embed_steps', 'finetune_steps', 'etas')},
                          'both_at_middle_eta': {k: {'finetuned': both('finetuned', k), 'pretrained': both('pretrained', k)}
                                                 for k in ['all'] + list(args.kinds or EDIT_KINDS)},
                          'fit_s': float(np.mean([r['fit_s'] for r in recs]))})
        lost = {'edits_with_images': sum(bool(r['images']) for r in recs)}
        for r in recs:  # what the fine-tuned model's failing images at the middle η lose
            for seed in s.seeds:
                im = r['images'].get(('finetuned', mid, seed))
                if im is None or r['judged'][('finetuned', mid, seed)]['kept']: continue
                for f, ok in kept_fields(r['edit'], probe(im)).items(): lost[f] = lost.get(f, 0) + (not ok)
        report('imagic_lost_at_middle_eta', lost)
    report('seconds', round(time.time() - t0))


if __name__ == '__main__':
    main()
