"""Candidate recipes of Imagic on the bundled world's validation edits: one record per edit, one point per recipe.

Each candidate is the model's recommended settings (or one of its presets) with some fields changed: the recipes that
followed the paper (a joint stage, which parts train, forgetting and mixing at sampling, vector projection, timestep
ranges, batches, schedules, adaptive stopping) as `imagic.Settings` fields. Every candidate is fitted on the same
validation edits (`benchmarks/sweep.py`'s: the first `--edits` of each kind) and sampled on the same η grid with the
four seeds, the records stored in `--records` as `imagic.world.run_edits` writes them: a rerun goes on where the last
one stopped, and the recommended settings' records from the earlier sweep (`06_sweep.jsonl`) are read, not refitted.
The sweep ran on the recommended recipe of its time (guidance 5, `rec_g5`); guidance 7.5 beat it on validation and is
the recommended one now, so the candidates measured on the old base name guidance 5 in their settings.

    python benchmarks/recipes.py --heldout 64 --stage3 --run recommended --base rec_g5 --ablation --compare 48 --fits DIR
        # a new recommended stage 3 re-measured from kept fits: the report's records (with the ablation) and compare's

    python benchmarks/recipes.py --run joint40 fgt_enc --kinds pose          # fit what is not stored yet
    python benchmarks/recipes.py --table                                       # every candidate's rates and fit seconds
    python benchmarks/recipes.py --figure nbs/world/09_recipes.png             # success against fit seconds
    python benchmarks/recipes.py --stage3 --lost --run rec_g5 recommended --kinds pose --fits DIR   # what the pose edits lose
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sweep import chosen_edits  # noqa: E402

RECORDS = Path(__file__).parent.parent / 'nbs' / 'world' / '09_recipes.jsonl'
ETAS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# The sweep ran on the recommended settings of the round's start (guidance 5, `rec_g5`); guidance 7.5 won and is the
# recommended one now, so the candidates measured on the old base keep guidance 5 in their settings (their records' key).
G5 = dict(guidance_scale=5.0)
# name -> (preset, changes, what it is). (`fast`'s validation records were fitted when its preset said η 0.6-0.8; the fit
# and the grid sampled, ETAS, do not depend on `etas`, so their keys were moved to the preset's η of today, 0.8-1.0.)
CANDIDATES = {
    'paper': ('paper', dict(G5), "the paper's steps (1000 + 1500) at the model's paper learning rates"),
    'recommended': (None, {}, "today's recommended: 100 + 900 steps, full fine-tuning at 3e-5, guidance 7.5 (chosen this round)"),
    'rec_g5': (None, dict(G5), 'the recommended recipe before this round: guidance 5 at sampling'),
    'fast': ('fast', {}, "today's fast: LoRA rank 16 on every layer, 400 steps at 1e-3"),
    'ft200': (None, dict(G5, finetune_steps=200, finetune_lr=1.5e-4), '100 + 200 steps, full fine-tuning at 1.5e-4'),
    'ft150cos': (None, dict(G5, finetune_steps=150, finetune_lr=3e-4, lr_schedule='cosine'), '100 + 150 steps at 3e-4, cosine decay'),
    'joint100': (None, dict(G5, embed_steps=0, finetune_steps=0, joint_steps=100, joint_embed_lr=1e-2, joint_lr=1.5e-4),
                 'the joint stage alone: 100 steps, embedding 1e-2, UNet 1.5e-4'),
    'forgedit': (None, dict(G5, embed_steps=0, finetune_steps=0, joint_steps=40, joint_batch=10, joint_embed_lr=1e-3, joint_lr=6e-5,
                            finetune_parts='forgedit', stop_loss=0.03),
                 "Forgedit's recipe as published: joint, batch 10, 40 steps, blocks 1-3, stop under 0.03"),
    'forgedit_hi': (None, dict(G5, embed_steps=0, finetune_steps=0, joint_steps=40, joint_batch=4, joint_embed_lr=1e-2, joint_lr=3e-4,
                               finetune_parts='forgedit'), 'joint, batch 4, 40 steps, blocks 1-3, learning rates for this small model'),
    'ft200_fgt_enc': (None, dict(G5, finetune_steps=200, finetune_lr=1.5e-4, forget='encoder'), 'ft200, the encoder forgotten at sampling'),
    'dec300': (None, dict(G5, finetune_steps=300, finetune_lr=1e-4, finetune_parts='decoder'), 'only the decoder trains: 100 + 300 steps at 1e-4'),
    'b4_150': (None, dict(G5, finetune_steps=150, finetune_lr=1e-4, finetune_batch=4), '100 + 150 steps of 4 samples at 1e-4'),
    'low300': (None, dict(G5, finetune_steps=300, finetune_lr=6e-5, timestep_range=[0.0, 0.6]), '100 + 300 steps at 6e-5, timesteps t < 600 only'),
    'rec450': (None, dict(G5, finetune_steps=450, finetune_lr=6e-5), 'half the recommended steps at twice the rate: 100 + 450 at 6e-5'),
    'rec_fgt_enc': (None, dict(G5, forget='encoder'), 'the former recommended (guidance 5), the encoder forgotten at sampling'),
    'rec_fgt_dec': (None, dict(G5, forget='decoder'), 'the former recommended (guidance 5), the decoder forgotten at sampling'),
    'rec_fgt_kv': (None, dict(G5, forget='all_but_cross_kv'), 'the former recommended (guidance 5), all but the cross-attention keys and values forgotten'),
    'rec_mix': (None, dict(G5, mix_weight=0.5, mix_range=[0.6, 1.0]), 'the former recommended (guidance 5), half the pretrained prediction for t >= 600 (SINE)'),
    'rec_mix_lo': (None, dict(G5, mix_weight=0.5, mix_range=[0.0, 0.4]), 'the former recommended (guidance 5), half the pretrained prediction for t < 400'),
    'rec_project': (None, dict(G5, edit_rule='project'), 'the former recommended (guidance 5), stage 3 by vector projection'),
    'rec_proj_mixlo': (None, dict(G5, edit_rule='project', mix_weight=0.5, mix_range=[0.0, 0.4]), 'the former recommended (guidance 5), projection and half the pretrained prediction for t < 400'),
    'rec_g3': (None, dict(guidance_scale=3.0), 'recommended, guidance 3 (not 7.5) at sampling'),
    'rec_proj_g3': (None, dict(edit_rule='project', guidance_scale=3.0), 'recommended, projection, guidance 3'),
    'rec_proj_g75': (None, dict(edit_rule='project', guidance_scale=7.5), 'recommended, projection, guidance 7.5'),
    'rec_g10': (None, dict(guidance_scale=10.0), 'recommended, guidance 10 at sampling'),
    'rec_proj_g10': (None, dict(edit_rule='project', guidance_scale=10.0), 'recommended, projection, guidance 10'),
    'rec_s50': (None, dict(G5, sample_steps=50), 'the former recommended (guidance 5), 50 DDIM steps (not 25) at sampling'),
    'rec_late0': (None, dict(G5, late_eta=0.0), "the former recommended (guidance 5), the late steps (t < 300) conditioned on e_opt (the input's embedding)"),
    'rec_late5': (None, dict(G5, late_eta=0.5), 'the former recommended (guidance 5), the late steps (t < 300) at η 0.5'),
    'rec_g75_late0': (None, dict(guidance_scale=7.5, late_eta=0.0), 'recommended (guidance 7.5), the late steps on e_opt'),
    'rec_g75_late0_5': (None, dict(guidance_scale=7.5, late_eta=0.0, late_range=[0.0, 0.5]), 'recommended (guidance 7.5), the steps t < 500 on e_opt'),
    'ft300_g75': (None, dict(finetune_steps=300, finetune_lr=9e-5, guidance_scale=7.5), '100 + 300 steps at 9e-5, guidance 7.5'),
    'fast_project': ('fast', dict(edit_rule='project'), "today's fast, stage 3 by vector projection"),
    'fast_mixlo': ('fast', dict(mix_weight=0.5, mix_range=[0.0, 0.4]), "today's fast, half the pretrained prediction for t < 400"),
    'fast_g75': ('fast', dict(guidance_scale=7.5), "today's fast, guidance 7.5"),
}


def settings_of(pipe, name:str):
    import imagic
    if name not in CANDIDATES: raise SystemExit(f"unknown candidate {name!r}; one of {', '.join(CANDIDATES)}")
    preset, changes, _ = CANDIDATES[name]
    return imagic.Settings.for_model(pipe, preset=preset, **changes)


def stored(pipe, name, edits, records, etas=ETAS, ablation=False):
    "Of `edits`, those with `name`'s records in any of `records` sampled on `etas` (the candidate's own η when None), with the ablation when `ablation`: index -> record."
    from imagic.world.edits import stored_records
    s = settings_of(pipe, name)
    return stored_records(list(records), pipe, edits, s, etas if etas is not None else s.etas, s.seeds, ablation)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split('\n\n', 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', default='birds')
    ap.add_argument('--run', nargs='*', default=[], help='candidates to fit (what is not stored yet)')
    ap.add_argument('--edits', type=int, default=8, help='validation edits per kind')
    ap.add_argument('--kinds', nargs='+', default=None)
    ap.add_argument('--records', default=str(RECORDS))
    ap.add_argument('--table', action='store_true')
    ap.add_argument('--figure', default=None, help='write the recipe figure (PNG) here')
    ap.add_argument('--heldout', type=int, default=0, metavar='N',
                    help='instead: the --run candidates on the first N held-out edits (N/4 per kind) beside SDEdit at its chosen strength, '
                         'with paired sign tests (records: 06_heldout.jsonl and 07_compare.jsonl)')
    ap.add_argument('--stage3', action='store_true',
                    help="the --run candidates differ from --base in stage 3 only (forgetting, mixing, projection, guidance, sampling steps): fit each "
                         "edit once with --base's settings and sample every candidate from that fit")
    ap.add_argument('--base', default='recommended', help='with --stage3: the candidate whose fit the stage-3 candidates share')
    ap.add_argument('--fits', default=None, help='with --stage3: a folder to keep each shared fit in (and read it from on a rerun)')
    ap.add_argument('--lost', action='store_true',
                    help='with --stage3: instead of records, what the --run candidates lose on the validation edits (every image probed; nothing stored)')
    ap.add_argument('--ablation', action='store_true', help='with --heldout --stage3: the pretrained model sampled too (the records the report reads)')
    ap.add_argument('--compare', type=int, default=0, metavar='N',
                    help="with --heldout --stage3: the first N edits stored as compare's 'imagic' runs too (07_compare.jsonl, tutorial 04's table)")
    ap.add_argument('--shard', default='0/1', help='i/n: with --heldout, fit every n-th held-out edit from the i-th')
    args = ap.parse_args(argv)
    if args.heldout: return heldout(args)
    import imagic
    from imagic.world import EDIT_KINDS, run_edits, trained_on_details
    pipe = imagic.load_pipeline(args.model, device='cpu')
    kinds = args.kinds or list(EDIT_KINDS)
    edits = [e for e in chosen_edits(args.edits, EDIT_KINDS, trained_on_details(pipe)) if e.kind in kinds]
    reads = [args.records, str(Path(args.records).parent / '06_sweep.jsonl')]
    if args.stage3 and args.lost: return lost(pipe, args.run, edits, args.base, args.fits)
    if args.stage3: stage3(pipe, args.run, edits, reads, args.records, args.base, args.fits, ETAS); args.run = []
    for name in args.run:
        s = settings_of(pipe, name)
        done = stored(pipe, name, edits, reads)
        for j, e in enumerate(edits):
            if j in done: continue
            r, = run_edits(pipe, [e], s, etas=ETAS, seeds=s.seeds, ablation=False, progress=False, records=args.records)
            print(f"{name}: edit {j + 1}/{len(edits)} ({e.kind}) fit {r['fit_s']:.1f} s", flush=True)
    if args.table or args.figure:
        rows = table(pipe, edits, reads)
        for r in rows: print(json.dumps(r))
        if args.figure: figure(rows, args.figure)


STAGE3 = ('forget', 'mix_weight', 'mix_range', 'edit_rule', 'etas', 'guidance_scale', 'sample_steps', 'late_eta', 'late_range')  # what a stage-3 candidate may change


def stage3(pipe, names, edits, reads, records, base_name='recommended', fits=None, etas=None, ablation=False,
           compare_records=None, compare_n=0, indices=None):
    """Stage-3 candidates from one fit per edit (`base_name`'s settings): each stored as if fitted alone (the same key
    `run_edits` would write), its fit seconds the shared fit's. With `fits` (a folder), each fit is kept there and read
    back by a later run instead of refitted (the fit is seeded, so it is the same fit). `etas`: the grid sampled, each
    candidate's own η when None (as `--heldout` samples). `ablation`: the pretrained model sampled too, as `run_edits`
    does with it. `compare_records`: each of the first `compare_n` edits also stored as `imagic.baselines.compare` stores
    its 'imagic' run (the middle η, sampled alone as `imagic_edit` samples it; its seconds the fit's and that sampling's),
    so that a change of the recommended stage 3 is re-measured from kept fits; `indices`: each edit's index in the list
    `compare` is given (default 0, 1, ...)."""
    import time
    import torch
    from PIL import Image
    from imagic.core import append_jsonl, image_size, load_image, read_jsonl
    from imagic.stages import generate_edits
    from imagic.state import model_fingerprint
    from imagic.world import judge
    from imagic.world.edits import _record_key, _record_line
    base = check_stage3(pipe, names, base_name)
    fp = model_fingerprint(pipe)
    settings = {n: settings_of(pipe, n) for n in names}
    done_cmp = {r['key'] for r in read_jsonl(compare_records)} if compare_records else set()
    pairs = list(zip(indices if indices is not None else range(len(edits)), edits))
    have = {n: stored(pipe, n, edits, reads, etas, ablation) for n in names}  # the record files read once, not per edit
    for j, (i, e) in enumerate(pairs):
        todo = [n for n in names if j not in have[n]]
        cmp_todo = [n for n in names if i < compare_n and _compare_key(pipe, fp, i, e, settings[n]) not in done_cmp]
        if not todo and not cmp_todo: continue
        e_tgt, e_opt, unet, fit_s = shared_fit(pipe, e, base, fits, fp)
        for name in todo:
            s = settings[name]
            grid_etas = etas if etas is not None else s.etas
            rec = dict(edit=e, fit_s=fit_s, judged={})
            for model, u in [('finetuned', unet)] + ([('pretrained', None)] if ablation else []):
                t0 = time.perf_counter()
                grid = generate_edits(pipe, e_tgt, e_opt, s, denoiser=u, etas=grid_etas, seeds=s.seeds, progress=False)
                rec[f'{model}_sample_s'] = time.perf_counter() - t0
                rec['judged'].update({(model, eta, sd): judge(e, im) for eta, row in zip(grid_etas, grid) for sd, im in zip(s.seeds, row)})
            append_jsonl(records, _record_line(_record_key(fp, e, s, grid_etas, s.seeds, ablation), rec))
        for name in cmp_todo:
            from imagic.baselines import compare_record
            from imagic.world import render
            from imagic.world.edits import edit_input
            s = settings[name]
            eta = s.etas[len(s.etas) // 2]
            t0 = time.perf_counter()
            shown, = generate_edits(pipe, e_tgt, e_opt, s, denoiser=unet, etas=[eta], seeds=s.seeds, progress=False)
            secs = fit_s + time.perf_counter() - t0
            src = load_image(Image.fromarray(render(e.source, image_size(pipe))), image_size(pipe))  # the input as compare loads it
            assert torch.equal(src, edit_input(e, image_size(pipe))[1]), "the input compare fits is not the kept fit's"
            append_jsonl(compare_records, compare_record(_compare_key(pipe, fp, i, e, s), i, e, 'imagic', shown, src, secs))
        print(f"stage 3: edit {j + 1}/{len(pairs)} ({e.kind}) fit {fit_s:.1f} s, {len(todo)} candidates sampled"
              + (f", {len(cmp_todo)} compare records" if cmp_todo else ''), flush=True)


def _compare_key(pipe, fp, i, e, s):
    "The key `imagic.baselines.compare` stores edit `i`'s 'imagic' run under when Imagic's knobs resolve to settings `s`."
    from imagic.baselines import _record_key, _resolved_knobs
    knobs = {k: v for k, v in s.to_dict().items() if k != 'seeds'}  # compare samples its own seeds argument, never a knob
    return _record_key(fp, i, e, 'imagic', list(s.seeds), _resolved_knobs(pipe, 'imagic', knobs))


def check_stage3(pipe, names, base_name):
    "`base_name`'s settings, once each of `names` is known to differ from them in stage-3 fields only (so it may be sampled from their fit); else exits naming the first that does not."
    base = settings_of(pipe, base_name)
    for name in names:
        d = {k: v for k, v in settings_of(pipe, name).to_dict().items() if base.to_dict().get(k) != v}
        if set(d) - set(STAGE3): raise SystemExit(f"{name} changes {sorted(set(d) - set(STAGE3))} of {base_name}: not a stage-3 candidate of it")
    return base


def fit_part(s):
    "Settings `s` with every stage-3 field at its default: what a kept fit is filed under, so that the stage-3 siblings of a recipe share its fits."
    from imagic.core import Settings
    return s.replace(**{k: getattr(Settings(), k) for k in STAGE3})


def shared_fit(pipe, e, base, fits=None, fp=None):
    """(e_tgt, e_opt, fine-tuned denoiser, fit seconds) of edit `e` with settings `base`: read from the folder `fits` when
    kept there, else fitted (and kept there when `fits` is given). The fit is seeded, so a kept fit is the same fit."""
    import hashlib
    import time
    import torch
    from imagic.core import encode_image, encode_text, image_size
    from imagic.stages import fit_stages
    from imagic.state import model_fingerprint
    from imagic.world.edits import _record_key, edit_input
    _, x = edit_input(e, image_size(pipe))
    lat, e_tgt = encode_image(pipe, x), encode_text(pipe, e.text)
    fp = fp or model_fingerprint(pipe)
    cache = Path(fits) / (hashlib.sha256(_record_key(fp, e, fit_part(base), (), (), False).encode()).hexdigest()[:24] + '.pt') if fits else None
    if cache is not None and cache.exists():
        got = torch.load(cache, weights_only=False)
        return e_tgt, got['e_opt'], got['unet'], got['fit_s']
    t0 = time.perf_counter()
    e_opt, unet, _, _ = fit_stages(pipe, lat, e_tgt, base, progress=False)
    fit_s = time.perf_counter() - t0
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(e_opt=e_opt, unet=unet, fit_s=fit_s), cache.with_suffix('.tmp')); cache.with_suffix('.tmp').replace(cache)
    return e_tgt, e_opt, unet, fit_s


def lost(pipe, names, edits, base_name='recommended', fits=None, etas=ETAS):
    """What limits the edits: each stage-3 candidate of `base_name` sampled from the shared fit of each edit (four seeds, `etas`),
    every image probed. Per η: the share of images that reach the asked attribute, that keep everything else, and, of
    those that reach it, the share that lose each other attribute (marks, pebbles, size, position, ...). Nothing stored."""
    from collections import Counter
    from imagic.stages import generate_edits
    from imagic.world import judge
    from imagic.state import model_fingerprint
    base, fp = check_stage3(pipe, names, base_name), model_fingerprint(pipe)
    settings = {n: settings_of(pipe, n) for n in names}
    tally = {n: {eta: Counter() for eta in etas} for n in names}
    for j, e in enumerate(edits):
        e_tgt, e_opt, unet, _ = shared_fit(pipe, e, base, fits, fp)
        for name, s in settings.items():
            grid = generate_edits(pipe, e_tgt, e_opt, s, denoiser=unet, etas=etas, seeds=s.seeds, progress=False)
            for eta, row in zip(etas, grid):
                for im in row:
                    v, c = judge(e, im, fields=True), tally[name][eta]  # the judge's verdicts, and what it found lost
                    c['images'] += 1; c['reached'] += v['attr']; c['kept'] += v['kept']; c['both'] += v['both']
                    if v['attr']: c.update(f for f, ok in v['fields'].items() if not ok)
        print(f"lost: edit {j + 1}/{len(edits)} ({e.kind})", flush=True)
    fields = sorted({f for n in names for c in tally[n].values() for f in c} - {'images', 'reached', 'kept', 'both'})
    print(f"\n| recipe | η | reached | kept | both | {' | '.join(f'{f} lost (of reached)' for f in fields)} |")
    print('|---' * (len(fields) + 5) + '|')
    for name in names:
        for eta, c in tally[name].items():
            n, r = c['images'], max(c['reached'], 1)
            print(f"| {name} | {eta} | {c['reached'] / n:.0%} | {c['kept'] / n:.0%} | {c['both'] / n:.0%} | "
                  + ' | '.join(f"{c[f] / r:.0%}" for f in fields) + ' |')
    return tally


def heldout(args):
    "The held-out table: each candidate at its η chosen on validation (best share of edits with both), beside SDEdit; sign tests."
    import numpy as np
    import imagic
    from imagic.baselines import compare, knobs_for
    from imagic.world import EDIT_KINDS, heldout_edits, run_edits, trained_on_details
    from imagic.world.edits import edit_successes, sign_test, stored_records
    pipe = imagic.load_pipeline(args.model, device='cpu')
    world = Path(args.records).parent
    edits = [e for e in heldout_edits(args.heldout, details=trained_on_details(pipe)) if args.kinds is None or e.kind in args.kinds]
    i, n = (int(x) for x in args.shard.split('/'))
    names = args.run or ['recommended']
    if args.stage3:
        mine = [(j, e) for j, e in enumerate(edits) if j % n == i]
        stage3(pipe, names, [e for _, e in mine], [world / '06_heldout.jsonl'], world / '06_heldout.jsonl', args.base, args.fits,
               ablation=args.ablation, compare_records=world / '07_compare.jsonl' if args.compare else None, compare_n=args.compare,
               indices=[j for j, _ in mine])
    for name in ([] if args.stage3 else names):
        s = settings_of(pipe, name)
        for j, e in enumerate(edits):
            if j % n != i: continue
            r, = run_edits(pipe, [e], s, etas=s.etas, seeds=s.seeds, ablation=False, progress=False, records=world / '06_heldout.jsonl')
            print(f"{name}: held-out edit {j + 1}/{len(edits)} ({e.kind}) fit {r.get('fit_s', 0):.1f} s", flush=True)
    sd = compare(pipe, edits, methods=('sdedit',), records=world / '07_compare.jsonl', progress=False, shard=(i, n),
                 knobs={'sdedit': knobs_for(pipe, 'sdedit')})
    if n > 1: return
    sd_ok = [any(j['both'] for j in r['judged']) for r in sorted(sd, key=lambda r: r['edit'])]
    val = [e for e in chosen_edits(8, EDIT_KINDS, trained_on_details(pipe)) if args.kinds is None or e.kind in args.kinds]
    reads = [args.records, str(world / '06_sweep.jsonl')]
    rows = {}
    for name in ['recommended'] + [m for m in names if m != 'recommended']:
        s = settings_of(pipe, name)
        recs = [r for _, r in sorted(stored_records(world / '06_heldout.jsonl', pipe, edits, s, s.etas, s.seeds, False).items())]
        if len(recs) < len(edits): print(f"{name}: {len(recs)} of {len(edits)} held-out edits stored"); continue
        vrecs = list(stored(pipe, name, val, reads).values())
        eta = max(s.etas, key=lambda e: (np.mean(edit_successes(vrecs, e)) if vrecs else 0, e))
        rows[name] = (eta, edit_successes(recs, eta), [r['edit'].kind for r in recs], float(np.mean([r['fit_s'] for r in recs])))
    kinds = [e.kind for e in edits]
    shown = [k for k in EDIT_KINDS if k in kinds]
    print(f"| recipe | η | {' | '.join(shown)} | all | fit s |")
    print('|---' * (len(shown) + 4) + '|')
    for name, (eta, ok, _, fit) in list(rows.items()) + [('sdedit', (knobs_for(pipe, 'sdedit')['strength'], sd_ok, kinds, float('nan')))]:
        per = ' | '.join(f"{np.mean([o for o, k in zip(ok, kinds) if k == kind]):.0%}" for kind in shown)
        print(f"| {name} | {eta} | {per} | {np.mean(ok):.0%} | {fit:.0f} |")
    rec = rows.get('recommended')
    for name, (eta, ok, _, _) in rows.items():
        for other, b in ([('recommended', rec[1])] if rec and name != 'recommended' else []) + [('sdedit', sd_ok)]:
            pose = [k == 'pose' for k in kinds]
            t_all, t_pose = sign_test(ok, b), sign_test([o for o, p in zip(ok, pose) if p], [x for x, p in zip(b, pose) if p])
            print(f"{name} vs {other}: all {t_all['only_first']} only {name}, {t_all['only_second']} only {other} (p {t_all['p']:.3g}); "
                  f"pose {t_pose['only_first']} vs {t_pose['only_second']} (p {t_pose['p']:.3g})")
    # the same edits at every η the recipes share: each against the recommended recipe at that η, and against SDEdit
    per = {}
    for name in rows:
        s = settings_of(pipe, name)
        recs = [r for _, r in sorted(stored_records(world / '06_heldout.jsonl', pipe, edits, s, s.etas, s.seeds, False).items())]
        per[name] = {eta: edit_successes(recs, eta) for eta in s.etas}
    shared = sorted(set.intersection(*(set(v) for v in per.values()))) if per else []
    print(f"\n| recipe | {' | '.join(f'η {e}' for e in shared)} |   (share of the {len(edits)} edits; vs recommended at that η; vs SDEdit)")
    print('|---' * (len(shared) + 1) + '|')
    for name, by in per.items():
        cells = []
        for eta in shared:
            ok = by[eta]
            vs_rec = sign_test(ok, per['recommended'][eta]) if 'recommended' in per and name != 'recommended' else None
            vs_sd = sign_test(ok, sd_ok)
            cells.append(f"{np.mean(ok):.0%}" + (f"; {vs_rec['only_first']} vs {vs_rec['only_second']} (p {vs_rec['p']:.2g})" if vs_rec else '')
                         + f"; SDEdit {vs_sd['only_first']} vs {vs_sd['only_second']} (p {vs_sd['p']:.2g})")
        print(f"| {name} | {' | '.join(cells)} |")


def stage3_base(pipe, name, bases=None):
    """The candidate (today's recommended or fast) whose fit `name` shares, differing from it in stage 3 only; None if
    neither. `bases`: the two bases' settings as dicts, when the caller has them already."""
    s = settings_of(pipe, name).to_dict()
    bases = bases or {b: settings_of(pipe, b).to_dict() for b in ('recommended', 'fast')}
    for base, b in bases.items():
        if base != name and not {k for k in set(s) | set(b) if s.get(k) != b.get(k)} - set(STAGE3): return base
    return None


def table(pipe, edits, reads) -> list:
    """Per candidate with stored records: the edits stored, its best η by 'both' over all stored edits, the rates there,
    pose's; its best η on the pose edits alone and the pose rate there (`pose_eta`, `pose_best`: what the figure
    compares, since every candidate has the pose edits); mean fit seconds (a stage-3 candidate's: those of the fit it
    shares, recorded with its base, not under the load its shared fit ran with)."""
    import numpy as np
    from imagic.world.edits import edit_successes
    out, fit_of = [], {}
    bases = {b: settings_of(pipe, b).to_dict() for b in ('recommended', 'fast')}
    for name in CANDIDATES:
        recs = list(stored(pipe, name, edits, reads).values())
        if not recs: continue
        base = stage3_base(pipe, name, bases)
        fit_of[name] = float(np.mean([r['fit_s'] for r in recs]))
        best = max(ETAS, key=lambda e: (np.mean(edit_successes(recs, e)), e))
        pose = [r for r in recs if r['edit'].kind == 'pose']
        pose_eta = max(ETAS, key=lambda e: (np.mean(edit_successes(pose, e)), e)) if pose else None
        out.append(dict(name=name, n=len(recs), eta=best, both=float(np.mean(edit_successes(recs, best))),
                        pose_n=len(pose), pose=float(np.mean(edit_successes(pose, best))) if pose else None,
                        pose_eta=pose_eta, pose_best=float(np.mean(edit_successes(pose, pose_eta))) if pose else None,
                        fit_s=fit_of.get(base, fit_of[name]), what=CANDIDATES[name][2], base=base,
                        kinds=sorted({r['edit'].kind for r in recs})))
    return out


def _crowds(points, near=1.45):
    "Points (x, y, label) grouped where they share a height and lie within a factor `near` of each other in x: one label per group."
    groups = []
    for x, y, lab in sorted(points, key=lambda p: (p[1], p[0])):
        g = groups[-1] if groups else None
        if g and g['y'] == y and x / g['x'][-1] < near: g['x'].append(x); g['labels'].append(lab)
        else: groups.append(dict(y=y, x=[x], labels=[lab]))
    return groups


def figure(rows, path, note='fit seconds per edit as recorded (this CPU, mean over the edits; log scale)'):
    """Success on the validation *pose* edits (every candidate has them; the full 32-edit sweep ran for a few) at each
    recipe's best η there. Left: against fit seconds, a point per recipe that fits differently (today's presets in
    orange; points close together share one label). Right: the stage-3 choices sampled from one shared fit (today's
    recommended, or `fast`), a bar each beside their base's bar — they cost the base's fit, so on the left they would
    sit on one spot. A recipe stored on all kinds says its rate over all of them too."""
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows = [r for r in rows if r.get('pose_n')]
    fits, s3 = [r for r in rows if not r.get('base')], [r for r in rows if r.get('base')]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11.5, 5.6), dpi=100, gridspec_kw=dict(width_ratios=[1.3, 1]))
    full, n_pose = max(r['n'] for r in rows), max(r['pose_n'] for r in rows)
    orange = ('paper', 'recommended', 'fast')
    def label(r):
        part = f", {r['pose_n']} of {n_pose} edits" if r['pose_n'] < n_pose else ''
        every = f"; all {full}: {r['both']:.0%}" if r['n'] == full and len(r['kinds']) > 1 else ''
        return f"{r['name']} (η {r['pose_eta']}{part}{every})"
    for r in fits:
        ax.scatter(r['fit_s'], 100 * r['pose_best'], s=34 if r['name'] in orange else 18, color='C1' if r['name'] in orange else 'C0', zorder=3)
    ax.set_xscale('log'); ax.set_xlabel(note, fontsize=9); ax.set_ylabel('validation pose edits succeeded (%)')
    ax.set_ylim(-5, 112); xs = [r['fit_s'] for r in fits]; ax.set_xlim(min(xs) / 1.5, max(xs) * 3.2)
    placed, renderer = [], fig.canvas.get_renderer()
    tries = [(5, 3, 'left', 'bottom'), (5, -3, 'left', 'top'), (-5, 3, 'right', 'bottom'), (-5, -3, 'right', 'top'),
             (5, 16, 'left', 'bottom'), (-5, 16, 'right', 'bottom'), (5, -16, 'left', 'top'), (-5, -16, 'right', 'top')]
    for g in sorted(_crowds([(r['fit_s'], round(100 * r['pose_best']), label(r)) for r in fits]), key=lambda g: -len(g['labels'])):
        for dx, dy, ha, va in tries:  # the first spot where the label overlaps no label placed before it and stays inside the axes
            a = ax.annotate('\n'.join(g['labels']), (g['x'][0], g['y']), fontsize=8, xytext=(dx, dy), textcoords='offset points',
                            ha=ha, va=va, linespacing=1.15, arrowprops=dict(arrowstyle='-', lw=0.4, color='0.6') if abs(dy) > 10 else None)
            box = a.get_window_extent(renderer)
            if not any(box.overlaps(b) for b in placed) and ax.get_window_extent(renderer).contains(box.x0, box.y0) \
                    and ax.get_window_extent(renderer).contains(box.x1, box.y1): break
            if (dx, dy) != tries[-1][:2]: a.remove()
        placed.append(box)
    ax.set_title('recipes that fit differently', fontsize=9); ax.grid(alpha=.3)
    by = {r['name']: r for r in rows}
    bars = []
    for base in ('recommended', 'fast'):
        group = [r for r in s3 if r['base'] == base]
        if group and base in by: bars += [by[base]] + sorted(group, key=lambda r: -r['pose_best'])
    ys = list(range(len(bars)))[::-1]
    bx.barh(ys, [100 * r['pose_best'] for r in bars], color=['C1' if r['name'] in orange else 'C0' for r in bars], height=0.7)
    bx.set_yticks(ys); bx.set_yticklabels([f"{r['name']} (η {r['pose_eta']})" for r in bars], fontsize=8)
    for y, r in zip(ys, bars):
        every = f"  (all {full}: {round(r['both'] * r['n'])}/{r['n']})" if r['n'] == full and len(r['kinds']) > 1 else ''
        bx.text(100 * r['pose_best'] + 1, y, f"{round(r['pose_best'] * r['pose_n'])}/{r['pose_n']}{every}", va='center', fontsize=7)
    bx.set_xlim(0, 140); bx.set_xticks(range(0, 101, 20)); bx.set_xlabel('validation pose edits succeeded (%)', fontsize=9)
    bx.grid(alpha=.3, axis='x')
    bx.set_title('stage 3 changed, sampled from one shared fit\n(orange: that fit sampled as it is)', fontsize=9)
    fig.suptitle(f"Recipes on the {n_pose} validation pose edits (the weak kind): success = one seed of four takes the asked pose "
                 "and keeps the rest, at the recipe's best η", fontsize=9)
    fig.tight_layout(); fig.savefig(path); plt.close(fig)


if __name__ == '__main__':
    main()
