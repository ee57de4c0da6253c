"""benchmarks/sweep.py, the settings sweep on validation edits: its candidates, its edits, and its records read back instead of refitted."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location('sweep_script', Path(__file__).parent.parent / 'benchmarks' / 'sweep.py')
sweep = importlib.util.module_from_spec(spec); spec.loader.exec_module(sweep)


def test_values_and_edits():
    assert sweep.parse_value('900') == 900 and sweep.parse_value('[0.8, 0.9]') == [0.8, 0.9] and sweep.parse_value('lora') == 'lora'
    from imagic.world import validation_edits
    edits = sweep.chosen_edits(2, ['pose', 'colour'], False)
    assert [e.kind for e in edits] == ['pose', 'colour', 'pose', 'colour']
    assert edits[0] == validation_edits(8, details=False)[0]  # the first of the validation stream, not new ones


def test_bad_input_is_one_line(tmp_path):
    for argv, says in ((['--set', 'finetune_steps'], 'field=value'), (['--kinds', 'hats'], 'unknown edit kind')):
        with pytest.raises(SystemExit) as e:
            sweep.main(['--model', 'birds', '--records', str(tmp_path / 'r.jsonl'), '--rates', *argv])
        assert says in str(e.value)


def test_a_stored_edit_is_read_back_not_refitted(tmp_path, capsys):
    rec = tmp_path / 'r.jsonl'
    argv = ['--model', 'birds', '--records', str(rec), '--edits', '1', '--kinds', 'pose', '--etas', '0.8',
            '--set', 'embed_steps=1', 'finetune_steps=1', 'sample_steps=2']
    sweep.main(argv)
    first = rec.read_text()
    assert first.count('\n') == 1 and '1 of 1 edits stored' in capsys.readouterr().out
    sweep.main(argv)  # the same candidate again: nothing fitted, the table from the record
    out = capsys.readouterr().out
    assert rec.read_text() == first and 'fit' in out and 'edit 1/1' not in out
    sweep.main(argv[:-3] + ['embed_steps=1', 'finetune_steps=2', 'sample_steps=2', '--rates'])  # another candidate has no record
    assert '0 of 1 edits stored' in capsys.readouterr().out


pspec = importlib.util.spec_from_file_location('pose_study_script', Path(__file__).parent.parent / 'benchmarks' / 'pose_study.py')
pose_study = importlib.util.module_from_spec(pspec); pspec.loader.exec_module(pose_study)


def test_pose_study_scales_the_models_settings_and_keeps_why_an_image_failed(tmp_path, monkeypatch):
    import json
    import imagic
    pipe = imagic.load_pipeline('birds', device='cpu')
    rec = imagic.Settings.for_model(pipe)
    assert pose_study.candidate_settings(pipe, '1.5x steps').finetune_steps == int(rec.finetune_steps * 1.5)
    assert pose_study.candidate_settings(pipe, 'recommended') == rec
    monkeypatch.setitem(pose_study.CANDIDATES, 'tiny', dict(embed_steps=1, finetune_steps=1, sample_steps=2))
    edits = pose_study.study_edits(4, ['pose'], details=True)
    assert len(edits) == 1 and edits[0][1].source.marks  # the detailed world's first validation pose edit
    path = tmp_path / 'p.jsonl'
    pose_study.run(pipe, 'tiny', edits, etas=(0.9,), records=path, progress=False)
    line, = [json.loads(l) for l in path.read_text().splitlines()]
    assert len(line['images']) == len(rec.seeds) and all(m['eta'] == 0.9 for m in line['images'])
    for m in line['images']:  # the probe's readings, and what it found changed whenever the edit is not kept
        assert {'marks', 'clutter', 'facing', 'lost'} <= set(m) and (m['kept'] == (m['lost'] == []))
    pose_study.run(pipe, 'tiny', edits, etas=(0.9,), records=path, progress=False)  # stored: not fitted again
    assert path.read_text().count('\n') == 1
