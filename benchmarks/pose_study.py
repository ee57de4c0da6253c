"""Why Imagic's pose edits fail on a birds-world model: a study on validation edits only.

Each candidate is one change to the settings the model recommends (`CANDIDATES`). For every validation edit of the chosen
kinds (`validation_edits(n)`, a stream apart from training and from the held-out edits), it fits Imagic and samples the
η grid (default: the model's recommended etas) with the four seeds through `run_edits`, and stores per image the
judge's verdicts, the probe's readings (pose, body place and size, facing, breast patch, the named attributes, and the
marks and pebbles where the world has them) and which of the other attributes it found changed (`lost`), so that a
failed pose edit can be told apart: pose not drawn, bird moved, facing flipped, a mark or a pebble lost.

Records: `nbs/world/06_pose_study.jsonl`, one line per candidate and edit, keyed by the model's weights; a rerun goes on
where it stopped.

    python benchmarks/pose_study.py --model FOLDER                               # every candidate, the 24 pose edits of 96
    python benchmarks/pose_study.py --candidate recommended --n 32 --shard 0/2   # the 8 pose edits of 32, every other one
    python benchmarks/pose_study.py --candidate recommended --kinds colour background accessory --n 32
"""
import argparse
from pathlib import Path

import torch

CANDIDATES = {  # name: changes to the model's recommended settings
    'recommended': {},
    '1.5x steps': dict(finetune_steps=1.5),  # a float: a factor on the recommended value
    'finetune lr 2x': dict(finetune_lr=2.0),
    'embed lr 0.3x': dict(embed_lr=0.3),
    'embed lr 3x': dict(embed_lr=3.0),
}
RECORDS = Path(__file__).resolve().parent.parent / 'nbs' / 'world' / '06_pose_study.jsonl'


def record_key(pipe, settings, edit, etas) -> str:
    "What a record depends on: the full settings, the edit, the η sampled, and the model's weights (a pipeline or its fingerprint)."
    from imagic.state import results_key
    from imagic.world.edits import scene_dict
    return results_key([settings.to_dict(), scene_dict(edit.source), scene_dict(edit.target), [float(e) for e in etas]], pipe)


def candidate_settings(pipe, name:str):
    "The model's recommended settings with candidate `name`'s change (a float factor scales the recommended value)."
    from imagic.core import Settings
    s = Settings.for_model(pipe)
    change = {k: (type(getattr(s, k))(getattr(s, k) * v) if isinstance(v, float) else v) for k, v in CANDIDATES[name].items()}
    return s.replace(**change)


def study_edits(n:int, kinds, source_pose=None, details:bool=None) -> list:
    "(index in `validation_edits(n)`, edit) for the edits of `kinds` (and, if given, inputs in `source_pose`), of the world `details` names (default: the bundled model's)."
    from imagic.world import DETAILED_WORLD, validation_edits
    return [(i, e) for i, e in enumerate(validation_edits(n, details=DETAILED_WORLD if details is None else details))
            if e.kind in kinds and (source_pose is None or e.source.pose == source_pose)]


def run(pipe, name:str, edits, etas=None, records=RECORDS, shard=(0, 1), progress:bool=True):
    "Fit and sample each edit of `edits` with candidate `name` at `etas` (default: its own) through `run_edits`, keeping its images; store a line per edit with the probe's readings and what it found lost in `records` (reused when there)."
    from imagic.core import append_jsonl, read_jsonl
    from imagic.world import probe, run_edits
    from imagic.world.edits import kept_fields, scene_dict
    from imagic.state import model_fingerprint
    s = candidate_settings(pipe, name)
    etas = tuple(float(e) for e in (etas or s.etas))
    done, fp = {r['key'] for r in read_jsonl(records)}, model_fingerprint(pipe)
    for j, (i, e) in enumerate(edits):
        key = record_key(fp, s, e, etas)
        if j % shard[1] != shard[0] or key in done: continue
        rec, = run_edits(pipe, [e], s, etas=etas, seeds=s.seeds, ablation=False, progress=False, keep_images=True)
        images = []
        for eta in etas:
            for seed in s.seeds:
                p = probe(rec['images']['finetuned', eta, seed])
                lost = [f for f, ok in kept_fields(e, p).items() if not ok]
                images.append(dict(eta=eta, seed=seed, **rec['judged']['finetuned', eta, seed], lost=lost, **{f: getattr(p, f) for f in (
                    'pose', 'colour', 'background', 'accessory', 'cx', 'cy', 'size', 'facing', 'patch', 'marks', 'clutter')}))
        append_jsonl(records, dict(key=key, candidate=name, overrides=CANDIDATES[name], edit=i, kind=e.kind,
                                   source=scene_dict(e.source), target=scene_dict(e.target),
                                   fit_s=rec['fit_s'], images=images))
        if progress: print(f'{name}: edit {i} ({e.kind}) {rec["fit_s"]:.0f} s', flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--model', default='birds', help='a birds-world model: bundled name or diffusers folder')
    ap.add_argument('--candidate', nargs='+', default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument('--etas', type=float, nargs='+', default=None, help="the η sampled (default: the candidate's own)")
    ap.add_argument('--kinds', nargs='+', default=['pose'])
    ap.add_argument('--n', type=int, default=96, help='validation edits to draw (cycling through the kinds: 96 = 24 per kind)')
    ap.add_argument('--source-pose', default=None, help="only inputs in this pose (e.g. 'pecking')")
    ap.add_argument('--shard', default='0/1', help='i/n: every n-th edit starting at i (records are shared)')
    ap.add_argument('--records', default=str(RECORDS))
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import imagic
    from imagic.world import trained_on_details
    pipe = imagic.load_pipeline(args.model, device='cpu')
    pipe.set_progress_bar_config(disable=True)
    shard = tuple(int(v) for v in args.shard.split('/'))
    for name in args.candidate:
        run(pipe, name, study_edits(args.n, args.kinds, args.source_pose, trained_on_details(pipe)), args.etas, args.records, shard)


if __name__ == '__main__':
    main()
