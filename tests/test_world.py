"""The shapes world: renderer, probe, held-out edits and the judging of edits (no trained model needed)."""
import math
from dataclasses import replace

import numpy as np
import pytest

from imagic.shapes_world import (BACKGROUNDS, COLOURS, SHAPES, Scene, all_captions, make_dataset, probe, probe_accuracy,
                          random_scene, render)
from imagic.world_eval import POSITION_TOL, SIZE_TOL, Edit, heldout_edits, judge


def test_captions_name_attributes_but_not_layout():
    s = Scene('circle', 'red', 'white', 0.2, 0.3, 0.3)
    assert s.caption == 'a red circle on a white background'
    assert len(all_captions()) == len(SHAPES) * len(COLOURS) * len(BACKGROUNDS) >= 3 * 6 * 3


def test_unknown_attributes_are_refused():
    with pytest.raises(ValueError, match='unknown shape'):
        Scene('hexagon', 'red', 'white', 0.5, 0.5, 0.3)
    with pytest.raises(ValueError, match='unknown colour'):
        Scene('circle', 'teal', 'white', 0.5, 0.5, 0.3)


def test_renderer_is_deterministic_and_keeps_shapes_in_frame():
    a, _ = make_dataset(50, seed=3)
    b, scenes = make_dataset(50, seed=3)
    assert (a == b).all()
    for s in scenes:  # the border is pure background: no shape touches the frame
        img = render(s, 32).astype(int)
        border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        assert (np.abs(border - np.array(BACKGROUNDS[s.background])) <= 1).all()


@pytest.mark.parametrize('res', [32, 64])
def test_probe_accuracy(res):
    acc = probe_accuracy(300, res, seed=777)
    assert min(acc['shape'], acc['colour'], acc['background']) >= 0.99, acc
    assert acc['max_centroid_error'] < 0.02, acc


def test_probe_reads_size_and_position():
    s = Scene('square', 'blue', 'black', 0.7, 0.25, 0.3)
    p = probe(render(s, 64))
    assert abs(p.cx - 0.7) < 0.01 and abs(p.cy - 0.25) < 0.01 and abs(p.size - 0.3) < 0.01


def test_heldout_edits_are_balanced_and_change_one_attribute():
    edits = heldout_edits(30)
    assert [e.kind for e in edits].count('colour') == [e.kind for e in edits].count('shape') == 10
    train_scenes = set((s.cx, s.cy) for s in make_dataset(2000)[1])
    for e in edits:
        changed = [k for k in ('shape', 'colour', 'background') if getattr(e.source, k) != getattr(e.target, k)]
        assert changed == [e.kind]
        assert (e.source.cx, e.source.cy) == (e.target.cx, e.target.cy)
        assert (e.source.cx, e.source.cy) not in train_scenes
    assert heldout_edits(30)[7] == edits[7]  # deterministic


def test_judge():
    src = Scene('circle', 'red', 'white', 0.4, 0.45, 0.3)
    e = Edit(src, replace(src, colour='blue'), 'colour')
    assert judge(e, render(e.target, 32)) == dict(attr=True, layout=True, both=True)
    unchanged = judge(e, render(src, 32))
    assert not unchanged['attr'] and unchanged['layout']
    moved = judge(e, render(replace(e.target, cx=0.4 + POSITION_TOL + 0.04), 32))
    assert moved['attr'] and not moved['layout'] and not moved['both']
    bigger = judge(e, render(replace(e.target, size=0.3 * (1 + SIZE_TOL + 0.08)), 32))
    assert bigger['attr'] and not bigger['layout']
    slightly = judge(e, render(replace(e.target, cx=0.4 + POSITION_TOL / 2, size=0.3 * (1 + SIZE_TOL / 2)), 32))
    assert slightly['both']
