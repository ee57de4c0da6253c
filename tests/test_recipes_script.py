"""benchmarks/recipes.py: its candidates are valid settings, and stage-3 candidates share one fit per edit, kept in a folder and read back."""
import importlib.util
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location('recipes_script', Path(__file__).parent.parent / 'benchmarks' / 'recipes.py')
recipes = importlib.util.module_from_spec(spec); spec.loader.exec_module(recipes)


@pytest.fixture(scope='module')
def pipe():
    import imagic
    return imagic.load_pipeline('birds', device='cpu')


def test_every_candidate_is_a_valid_recipe(pipe):
    for name in recipes.CANDIDATES: recipes.settings_of(pipe, name)  # refused in one line if a field were wrong
    with pytest.raises(SystemExit, match='unknown candidate'): recipes.settings_of(pipe, 'nope')


def test_stage3_candidates_share_a_kept_fit(pipe, tmp_path, monkeypatch):
    from imagic.world import EDIT_KINDS, read_records, trained_on_details
    tiny = dict(embed_steps=1, finetune_steps=1, sample_steps=2, seeds=[0])
    monkeypatch.setattr(recipes, 'CANDIDATES', {'base': (None, tiny, ''), 'g3': (None, dict(tiny, guidance_scale=3.0), ''),
                                                'proj': (None, dict(tiny, edit_rule='project'), ''),
                                                'longer': (None, dict(tiny, finetune_steps=2), '')})
    edits = [e for e in recipes.chosen_edits(1, EDIT_KINDS, trained_on_details(pipe)) if e.kind == 'pose']
    rec, fits = tmp_path / 'r.jsonl', tmp_path / 'fits'
    recipes.stage3(pipe, ['g3'], edits, [rec], rec, 'base', fits, (0.5, 1.0))
    assert len(read_records(rec)) == 1 and len(list(fits.glob('*.pt'))) == 1
    assert 0 in recipes.stored(pipe, 'g3', edits, [rec], (0.5, 1.0))  # stored as if fitted alone, under g3's own key
    import imagic.stages
    monkeypatch.setattr(imagic.stages, 'fit_stages', lambda *a, **k: pytest.fail('refitted'))
    recipes.stage3(pipe, ['proj', 'g3'], edits, [rec], rec, 'base', fits, (0.5, 1.0))  # the kept fit, and g3 not sampled again
    assert len(read_records(rec)) == 2
    with pytest.raises(SystemExit, match='not a stage-3 candidate'):
        recipes.stage3(pipe, ['longer'], edits, [rec], rec, 'base', fits, (0.5, 1.0))


def test_lost_tallies_what_the_judge_says_from_the_kept_fit(pipe, tmp_path, monkeypatch):
    "`--lost` probes the same images `stage3` judges (same kept fit, same seeds): its counts agree with the stored verdicts."
    from imagic.world import EDIT_KINDS, read_records, trained_on_details
    tiny = dict(embed_steps=1, finetune_steps=1, sample_steps=2, seeds=[0, 1])
    monkeypatch.setattr(recipes, 'CANDIDATES', {'base': (None, tiny, ''), 'g3': (None, dict(tiny, guidance_scale=3.0), '')})
    edits = [e for e in recipes.chosen_edits(1, EDIT_KINDS, trained_on_details(pipe)) if e.kind in ('pose', 'colour')]
    rec, fits, etas = tmp_path / 'r.jsonl', tmp_path / 'fits', (0.5, 1.0)
    recipes.stage3(pipe, ['g3'], edits, [rec], rec, 'base', fits, etas)
    import imagic.stages
    monkeypatch.setattr(imagic.stages, 'fit_stages', lambda *a, **k: pytest.fail('refitted'))
    tally = recipes.lost(pipe, ['g3'], edits, 'base', fits, etas)['g3']
    judged = [v for r in read_records(rec).values() for v in r['judged'].items()]
    for eta in etas:
        verdicts = [v for (m, e, s), v in judged if e == eta]
        assert tally[eta]['images'] == len(edits) * 2 == len(verdicts)
        for crit, key in (('attr', 'reached'), ('kept', 'kept'), ('both', 'both')):
            assert tally[eta][key] == sum(v[crit] for v in verdicts), (eta, crit)
        assert sum(n for f, n in tally[eta].items() if f not in ('images', 'reached', 'kept', 'both')) >= tally[eta]['reached'] - tally[eta]['both']


def test_stage3_stores_the_ablation_and_compare_records_a_run_would(pipe, tmp_path, monkeypatch):
    "A stage-3 change re-measured from kept fits: the record with the ablation is the one the report reads, and the 'imagic' compare record is found by `compare` and holds the images a fresh `compare` run makes (same CLIP score)."
    from imagic.baselines import compare
    from imagic.world import EDIT_KINDS, trained_on_details
    from imagic.world.edits import stored_records
    tiny = dict(embed_steps=1, finetune_steps=1, sample_steps=2, etas=[0.5, 1.0], seeds=[0, 2])
    monkeypatch.setattr(recipes, 'CANDIDATES', {'base': (None, tiny, ''), 'g3': (None, dict(tiny, guidance_scale=3.0), '')})
    edits = [e for e in recipes.chosen_edits(1, EDIT_KINDS, trained_on_details(pipe)) if e.kind in ('pose', 'colour')]
    rec, cmp, fits = tmp_path / 'r.jsonl', tmp_path / 'c.jsonl', tmp_path / 'fits'
    recipes.stage3(pipe, ['g3'], edits, [rec], rec, 'base', fits, ablation=True, compare_records=cmp, compare_n=1, indices=[0, 1])
    s = recipes.settings_of(pipe, 'g3')
    found = stored_records(rec, pipe, edits, s, s.etas, s.seeds, True)
    assert sorted(found) == [0, 1] and {m for m, _, _ in found[0]['judged']} == {'finetuned', 'pretrained'}
    knobs = {'imagic': {k: v for k, v in dict(tiny, guidance_scale=3.0).items() if k != 'seeds'}}  # compare's seeds are its argument
    with pytest.raises(ValueError, match='seeds is not a knob'):
        compare(pipe, edits[:1], methods=('imagic',), knobs={'imagic': dict(tiny)}, records=tmp_path / 'no.jsonl', progress=False)
    assert not (tmp_path / 'no.jsonl').exists()
    got = compare(pipe, edits[:1], methods=('imagic',), seeds=s.seeds, knobs=knobs, records=cmp, stored_only=True, progress=False)
    assert len(got) == 1 and len(got[0]['judged']) == 2
    fresh = compare(pipe, edits[:1], methods=('imagic',), seeds=s.seeds, knobs=knobs,
                    records=tmp_path / 'fresh.jsonl', progress=False)
    assert abs(fresh[0]['clip'] - got[0]['clip']) < 1e-3 and [j['both'] for j in fresh[0]['judged']] == [j['both'] for j in got[0]['judged']]
    import imagic.stages
    monkeypatch.setattr(imagic.stages, 'fit_stages', lambda *a, **k: pytest.fail('refitted'))
    recipes.stage3(pipe, ['g3'], edits, [rec], rec, 'base', fits, ablation=True, compare_records=cmp, compare_n=1, indices=[0, 1])
    assert len(rec.read_text().splitlines()) == 2 and len(cmp.read_text().splitlines()) == 1  # nothing sampled twice


def test_a_kept_fit_is_filed_under_its_fit_settings_only(pipe):
    "Two recipes that differ in stage 3 only share their kept fits; one that fits differently does not."
    s = recipes.settings_of(pipe, 'recommended')
    assert recipes.fit_part(s) == recipes.fit_part(recipes.settings_of(pipe, 'rec_proj_g10'))
    assert recipes.fit_part(s) != recipes.fit_part(recipes.settings_of(pipe, 'ft200'))
    assert recipes.fit_part(s).finetune_steps == s.finetune_steps and recipes.fit_part(s).guidance_scale == type(s)().guidance_scale
