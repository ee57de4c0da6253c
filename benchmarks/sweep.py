"""A settings candidate of Imagic on a birds-world model, on validation edits only, stored edit by edit.

A candidate is the model's recommended settings (or one of its presets) with some fields changed. Each validation edit
(`validation_edits`: a seed stream apart from training and from the held-out edits) is fitted once and sampled at every
η of the grid with the four seeds through `run_edits`, which stores the judged edit in `--records` as it goes: a rerun,
or a second process on another `--shard`, goes on where the others stopped. `--rates` prints the candidate's table from
the records without fitting anything.

    python benchmarks/sweep.py --model FOLDER --set finetune_steps=900 --records nbs/world/06_sweep.jsonl --shard 0/2
    python benchmarks/sweep.py --model FOLDER --preset fast --set finetune_steps=300 --kinds pose --rates
"""
import argparse
import json


def parse_value(text):
    "A `--set` value as JSON where it parses (numbers, lists, true/false), else the string itself."
    try: return json.loads(text)
    except json.JSONDecodeError: return text


def candidate(pipe, preset=None, changes=()):
    "The model's settings (with `preset`), changed by `changes`: 'field=value' strings."
    import imagic
    kw = {}
    for c in changes:
        if '=' not in c: raise SystemExit(f"--set takes field=value, not {c!r}")
        k, v = c.split('=', 1); kw[k] = parse_value(v)
    return imagic.Settings.for_model(pipe, preset=preset, **kw)


def chosen_edits(n:int, kinds, details:bool) -> list:
    "The first `n` validation edits of each of `kinds` (the stream cycles the kinds, so these are the first 4n edits' ones)."
    from imagic.world import EDIT_KINDS, validation_edits
    edits = validation_edits(n * len(EDIT_KINDS), details=details)
    return [e for e in edits if e.kind in kinds]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split('\n\n', 1)[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--model', required=True, help='a birds-world model: bundled name or diffusers folder')
    ap.add_argument('--preset', default=None, help="start from this preset of the model's settings (e.g. fast)")
    ap.add_argument('--set', nargs='*', default=[], metavar='FIELD=VALUE', help='changes to the settings')
    ap.add_argument('--etas', type=float, nargs='+', default=[0.5, 0.6, 0.7, 0.8, 0.9, 1.0], help='the η grid sampled')
    ap.add_argument('--edits', type=int, default=8, help='validation edits per kind')
    ap.add_argument('--kinds', nargs='+', default=None, help='edit kinds (default: all)')
    ap.add_argument('--ablation', action='store_true', help='also sample the pretrained model at the same η and seeds')
    ap.add_argument('--records', required=True, help='JSON-lines file of judged edits (read back, appended to)')
    ap.add_argument('--shard', default='0/1', help='i/n: this process fits every n-th edit from the i-th')
    ap.add_argument('--rates', action='store_true', help='print the stored rates only')
    args = ap.parse_args(argv)

    import imagic
    from imagic.world import EDIT_KINDS, rates_table, run_edits, trained_on_details
    from imagic.world.edits import stored_records
    pipe = imagic.load_pipeline(args.model, device='cpu')
    s = candidate(pipe, args.preset, args.set)
    kinds = args.kinds or list(EDIT_KINDS)
    unknown = set(kinds) - set(EDIT_KINDS)
    if unknown: raise SystemExit(f"unknown edit kind(s) {sorted(unknown)}; the kinds are {EDIT_KINDS}")
    edits = chosen_edits(args.edits, kinds, trained_on_details(pipe))
    etas = tuple(args.etas)
    if not args.rates:
        i, n = (int(x) for x in args.shard.split('/'))
        done = stored_records(args.records, pipe, edits, s, etas, s.seeds, args.ablation)  # read once: shards fit disjoint edits
        for j, e in enumerate(edits):
            if j % n != i or j in done: continue
            r, = run_edits(pipe, [e], s, etas=etas, seeds=s.seeds, ablation=args.ablation, progress=False, records=args.records)
            print(f"edit {j + 1}/{len(edits)} ({e.kind}): fit {r['fit_s']:.0f} s", flush=True)
    recs = list(stored_records(args.records, pipe, edits, s, etas, s.seeds, args.ablation).values())
    print(f"# {len(recs)} of {len(edits)} edits stored; settings {json.dumps({k: v for k, v in s.to_dict().items() if k != 'seeds'})}")
    if not recs: return
    models = ('finetuned', 'pretrained') if args.ablation else ('finetuned',)
    print(f"{'model':>10} {'kind':>10} {'n':>3} | " + ' '.join(f'η {e:<4}' for e in etas) + '  (share of edits: one seed of four both reaches the asked attribute and keeps the rest)')
    for m in models:
        table = rates_table(recs, m, by_kind=True)
        for kind in ['all'] + kinds:
            rows = {r['eta']: r for r in table if r['kind'] == kind}
            if not rows: continue
            print(f"{m:>10} {kind:>10} {next(iter(rows.values()))['n']:3d} | " + ' '.join(f"{rows[e]['both']:6.0%}" for e in etas if e in rows))
    print(f"fit: {sum(r['fit_s'] for r in recs) / len(recs):.0f} s on average")


if __name__ == '__main__':
    main()
