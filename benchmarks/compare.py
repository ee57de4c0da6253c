"""Imagic against SDEdit, DDIM inversion and LEDITS++ on the bundled world's held-out edits (the paper's Figs. 6 and 8).

    python benchmarks/compare.py --curves         # each method's knob swept on the validation edits (the trade-off curves);
                                                  # each baseline's best value (most edits with both) stored in the model
    python benchmarks/compare.py --choose-knobs   # the older search: every knob of KNOB_GRIDS in turn, stored in the model
    python benchmarks/compare.py                  # the table on the held-out edits (12 per kind), printed as Markdown

Both steps store one JSON line per (edit, method, knobs) and reuse them when rerun: an interrupted run goes on
where it stopped, and the tutorial "Why Imagic" reads the same files. Imagic's own knob, η, is the middle of the
model's recommended etas, chosen on validation edits (`nbs/world/06_sweep.jsonl`, whose records also give Imagic's
curve: one fit per edit, every η sampled from it). `--shard i/n` runs every n-th held-out edit, so that n processes
share the work; run once more without it to print the table.
"""
import argparse
import json
import time
from pathlib import Path

import torch

from imagic import load_pipeline
from imagic.baselines import TRADEOFF_KNOBS, choose_knob, compare, comparison_table, format_table, knob_sweep, knobs_for, store_knobs
from imagic.core import DEFAULT_MODEL, resolve_model
from imagic.world import EDIT_KINDS, heldout_edits, validation_edits

HERE = Path(__file__).resolve().parent.parent / 'nbs' / 'world'
BASELINES = ('sdedit', 'ddim_inversion', 'ledits')


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default=DEFAULT_MODEL)
    ap.add_argument('--curves', action='store_true', help="sweep each method's knob on the validation edits; store each baseline's best")
    ap.add_argument('--choose-knobs', action='store_true', help='choose and store each baseline knob on the validation edits')
    ap.add_argument('--methods', nargs='+', default=list(BASELINES) + ['imagic'])
    ap.add_argument('--validation', type=int, default=16, help='validation edits for the knobs')
    ap.add_argument('--edits', type=int, default=48, help='held-out edits (cycling through the kinds: 48 = 12 per kind)')
    ap.add_argument('--records', default=None, help='.jsonl records (default: nbs/world/07_knobs.jsonl or 07_compare.jsonl)')
    ap.add_argument('--json', default=None, help='also write the table rows here')
    ap.add_argument('--shard', default='0/1', help='i/n: run every n-th held-out edit starting at i (records are shared)')
    ap.add_argument('--threads', type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads: torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, device='cpu')
    if args.curves:
        eds = validation_edits(args.validation)
        for m in args.methods:
            records = args.records or HERE / ('06_sweep.jsonl' if m == 'imagic' else '07_knobs.jsonl')
            t0 = time.time()
            rows = [r for r in knob_sweep(pipe, m, eds, records=records, progress=False) if r['kind'] == 'all']
            best = max(rows, key=lambda r: r['both'])  # max keeps the first (least noise, least guidance) of equals
            print(f"{m} ({TRADEOFF_KNOBS[m][0]}): " + '; '.join(f"{r['value']:g}: attribute {r['attr']:.0%}, kept {r['kept']:.0%}, "
                  f"both {r['both']:.0%}" for r in rows) + f" -> best {best['value']:g} ({time.time() - t0:.0f} s)", flush=True)
            if m != 'imagic' and args.model == DEFAULT_MODEL: store_knobs(resolve_model(args.model), m, {best['knob']: best['value']})
        return
    if args.choose_knobs:
        records = args.records or HERE / '07_knobs.jsonl'
        eds = validation_edits(args.validation)
        for m in args.methods:
            if m == 'imagic': continue  # its η is the model's recommended middle one, chosen in nbs/world/06_sweep.jsonl
            t0 = time.time()
            best, scores = choose_knob(pipe, m, eds, records=records)
            tried = '; '.join(f"{' '.join(f'{a}={b}' for a, b in k.items())}: {r:.0%}" for k, r in scores)
            print(f"{m}: {tried} -> {best} ({time.time() - t0:.0f} s)", flush=True)
            if args.model == DEFAULT_MODEL: store_knobs(resolve_model(args.model), m, best)
        return
    records = args.records or HERE / '07_compare.jsonl'
    shard = tuple(int(v) for v in args.shard.split('/'))
    recs = compare(pipe, heldout_edits(args.edits), methods=args.methods, records=records, shard=shard)
    if shard[1] > 1: return
    rows = comparison_table(recs, kinds=list(EDIT_KINDS))
    print({m: knobs_for(pipe, m) for m in args.methods})
    print(format_table(rows))
    if args.json: Path(args.json).write_text(json.dumps(rows, indent=1) + '\n')


if __name__ == '__main__':
    main()
