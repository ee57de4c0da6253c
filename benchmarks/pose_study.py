"""Why Imagic's pose edits fail on the bundled birds model: a study on validation edits only.

Each candidate is one change to the settings the model recommended when the study began (`BASE`). For every validation edit of the chosen kinds
(`validation_edits(n)`, a stream apart from training and from the held-out edits), it fits Imagic and samples
η 0.6 / 0.7 / 0.8 with the four seeds through `run_edits`, and stores per image the judge's
verdicts *and* the probe's readings (pose, body place and size, facing, breast patch, the named attributes), so
that a failed pose edit can be told apart: pose not drawn, bird moved, facing flipped, patch lost.

Records: `nbs/world/06_pose_study.jsonl`, one line per candidate and edit; a rerun goes on where it stopped.
The report notebook (`nbs/world/06_report.ipynb`) reads them.

    python benchmarks/pose_study.py                                    # the pose study: every candidate, 24 pose edits
    python benchmarks/pose_study.py --candidate '600 steps' --shard 0/2 # one candidate, every other edit
    python benchmarks/pose_study.py --candidate '600 steps' --kinds colour background accessory --n 32
"""
import argparse
from pathlib import Path

import torch

# where the study began: the settings the model recommended then (F300: 300 fine-tuning steps, η 0.6 / 0.7 / 0.8)
BASE = dict(finetune_steps=300, etas=(0.6, 0.7, 0.8))
CANDIDATES = {  # name: changes to BASE, on the model's recommended settings
    'F300': {},
    '600 steps': dict(finetune_steps=600),
    '900 steps': dict(finetune_steps=900),
    'finetune lr 6e-5': dict(finetune_lr=6e-5),
    'embed lr 3e-3': dict(embed_lr=3e-3),
    'embed lr 3e-2': dict(embed_lr=3e-2),
}
ETAS = (0.6, 0.7, 0.8)
RECORDS = Path(__file__).resolve().parent.parent / 'nbs' / 'world' / '06_pose_study.jsonl'


def record_key(pipe, settings, edit) -> str:
    "What a record depends on: the full settings, the edit, and the model's weights (a pipeline or its fingerprint)."
    from imagic.state import results_key
    from imagic.world.edits import scene_dict
    return results_key([settings.to_dict(), scene_dict(edit.source), scene_dict(edit.target), list(ETAS)], pipe)


def study_edits(n:int, kinds, source_pose=None) -> list:
    "(index in `validation_edits(n)`, edit) for the edits of `kinds` (and, if given, inputs in `source_pose`)."
    from imagic.world import validation_edits
    return [(i, e) for i, e in enumerate(validation_edits(n))
            if e.kind in kinds and (source_pose is None or e.source.pose == source_pose)]


def run(pipe, name:str, edits, records=RECORDS, shard=(0, 1), progress:bool=True):
    "Fit and sample each edit of `edits` with candidate `name` (through `run_edits`, keeping its images), storing a line per edit with the probe's readings in `records` (reused when there)."
    from imagic.core import Settings, append_jsonl, read_jsonl
    from imagic.world import probe, run_edits
    s = Settings.for_model(pipe, **{**BASE, **CANDIDATES[name]})
    from imagic.state import model_fingerprint
    done, fp = {r['key'] for r in read_jsonl(records)}, model_fingerprint(pipe)
    for j, (i, e) in enumerate(edits):
        key = record_key(fp, s, e)
        if j % shard[1] != shard[0] or key in done: continue
        rec, = run_edits(pipe, [e], s, etas=ETAS, seeds=s.seeds, ablation=False, progress=False, keep_images=True)
        images = []
        for eta in ETAS:
            for seed in s.seeds:
                p = probe(rec['images']['finetuned', eta, seed])
                images.append(dict(eta=eta, seed=seed, **rec['judged']['finetuned', eta, seed], **{f: getattr(p, f) for f in (
                    'pose', 'colour', 'background', 'accessory', 'cx', 'cy', 'size', 'facing', 'patch')}))
        append_jsonl(records, dict(key=key, candidate=name, overrides=CANDIDATES[name], edit=i, kind=e.kind,
                                   source=scene_dict(e.source), target=scene_dict(e.target),
                                   fit_s=rec['fit_s'], images=images))
        if progress: print(f'{name}: edit {i} ({e.kind}) {rec["fit_s"]:.0f} s', flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--candidate', nargs='+', default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument('--kinds', nargs='+', default=['pose'])
    ap.add_argument('--n', type=int, default=96, help='validation edits to draw (cycling through the kinds: 96 = 24 per kind)')
    ap.add_argument('--source-pose', default=None, help="only inputs in this pose (e.g. 'pecking')")
    ap.add_argument('--shard', default='0/1', help='i/n: every n-th edit starting at i (records are shared)')
    ap.add_argument('--records', default=str(RECORDS))
    ap.add_argument('--threads', type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import imagic
    pipe = imagic.load_pipeline(device='cpu')
    pipe.set_progress_bar_config(disable=True)
    shard = tuple(int(v) for v in args.shard.split('/'))
    for name in args.candidate:
        run(pipe, name, study_edits(args.n, args.kinds, args.source_pose), args.records, shard)


if __name__ == '__main__':
    main()
