"""The birds world (imagic.world): renderer, probe, held-out edits, and a judge that is not lenient. No trained model needed."""
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

import imagic.world as world
from imagic.world import (EDIT_KINDS, NAMED_FIELDS, UNNAMED_FIELDS, Scene, heldout_edits, judge, perturb, probe,
                          probe_accuracy, random_scene, render)


def test_interface_names():
    assert EDIT_KINDS == ('pose', 'colour', 'background', 'accessory')
    assert set(UNNAMED_FIELDS) >= {'cx', 'cy', 'size', 'facing', 'patch', 'texture'}
    assert set(NAMED_FIELDS) == set(EDIT_KINDS)
    assert len(world.POSES) >= 3 and len(world.COLOURS) >= 5 and len(world.BACKGROUNDS) >= 3 and len(world.TEXTURES) >= 4


def test_render_any_resolution_from_one_scene():
    s = random_scene(np.random.default_rng(0))
    for res in (64, 256):
        im = render(s, res)
        assert im.shape == (res, res, 3) and im.dtype == np.uint8
    with pytest.raises(ValueError, match='res must be'):
        render(s, 0)


def test_captions_never_name_the_unnamed():
    rng = np.random.default_rng(1)
    for _ in range(50):
        s = random_scene(rng)
        for f in ('facing', 'patch', 'texture'):
            other = perturb(s, f, rng)
            assert other.caption == s.caption
        assert s.caption.startswith('an ' if s.colour[0] in 'aeiou' else 'a ')


def test_poses_move_the_silhouette_not_the_body():
    s = Scene('standing', 'red', 'white', 'none', .5, .6, .38, 'right', 'none', 'plain')
    ims = {p: render(replace(s, pose=p), 64).astype(int) for p in world.POSES}
    masks = {p: (im != im[0, 0]).any(-1) for p, im in ims.items()}
    for a in world.POSES:
        for b in world.POSES:
            if a < b: assert (masks[a] ^ masks[b]).sum() > 20, (a, b)  # the silhouette changes
    for p in world.POSES:  # ... while the probe finds the same body
        r = probe(render(replace(s, pose=p), 64))
        assert abs(r.cx - s.cx) < .01 and abs(r.cy - s.cy) < .01 and abs(r.size / s.size - 1) < .03


def test_probe_accuracy_on_500_fresh_renders():
    acc = probe_accuracy(500, res=64, seed=777)
    assert all(acc[k] >= .95 for k in ('pose', 'colour', 'background', 'accessory', 'facing', 'patch', 'position', 'size')), acc
    assert acc['worst_position_error'] <= .03


def test_probe_reads_the_fine_texture_only_at_256():
    acc = probe_accuracy(60, res=256, seed=778)
    assert acc['texture'] >= .95, acc
    assert probe(render(random_scene(np.random.default_rng(2)), 64)).texture is None


def test_probe_takes_pil_array_and_tensor():
    import torch
    s = random_scene(np.random.default_rng(3)); im = render(s, 64)
    a, b = probe(im), probe(Image.fromarray(im))
    c = probe(torch.from_numpy(im).permute(2, 0, 1).float() / 255)
    assert a.pose == b.pose == c.pose == s.pose and a.patch == b.patch == c.patch == s.patch
    with pytest.raises(ValueError, match='square RGB'):
        probe(np.zeros((64, 32, 3)))


def test_heldout_edits_cycle_kinds_and_change_one_field():
    eds = heldout_edits(16)
    assert [e.kind for e in eds] == list(EDIT_KINDS) * 4
    for e in eds:
        assert [f for f in NAMED_FIELDS + UNNAMED_FIELDS if getattr(e.source, f) != getattr(e.target, f)] == [e.kind]
        assert e.text == e.target.caption and e.source_text == e.source.caption and e.text != e.source_text
    assert heldout_edits(16) == eds
    assert {e.source for e in heldout_edits(16, seed=world.VALIDATION_SEED)}.isdisjoint({e.source for e in eds})


@pytest.mark.parametrize('field', UNNAMED_FIELDS + NAMED_FIELDS)
def test_judge_rejects_any_one_attribute_changed(field):
    rng = np.random.default_rng(hash(field) % 1000)
    rejected = 0; tried = 0
    for e in heldout_edits(12, seed=99, details=field in ('marks', 'clutter')):  # the details exist in a world with them
        if field == e.kind: continue
        wrong = perturb(e.target, field, rng)
        assert [f for f in NAMED_FIELDS + UNNAMED_FIELDS if getattr(wrong, f) != getattr(e.target, f)] == [field]
        res = 256 if field == 'texture' else 64
        j = judge(e, render(wrong, res))
        tried += 1; rejected += not (j['fine'] if field == 'texture' else j['both'])
        assert judge(e, render(e.target, res))['both']  # the right answer passes
    assert rejected == tried, f'{field}: {rejected}/{tried} rejected'


def test_judge_at_256_reports_fine():
    e = heldout_edits(1)[0]
    assert judge(e, render(e.target, 256)) == dict(attr=True, kept=True, both=True, fine=True)
    assert 'fine' not in judge(e, render(e.target, 64))


def test_probe_reads_the_texture_whatever_its_sign_per_cell_but_not_when_faint():
    "The texture's sign flipped on random 4 px cells (what a convolutional upscaler draws) is still the texture; at 30 % of its amplitude it is not."
    from dataclasses import replace
    rng = np.random.default_rng(5)
    for texture in ('hstripes', 'vstripes', 'checks'):
        s = replace(random_scene(rng), texture=texture)
        flat = render(replace(s, texture='plain'), 256).astype(float)
        detail = render(s, 256).astype(float) - flat
        flips = np.kron(rng.choice([-1., 1.], (64, 64)), np.ones((4, 4)))[..., None]
        assert probe(np.clip(flat + flips * detail, 0, 255).round().astype(np.uint8)).texture == texture
        assert probe(np.clip(flat + 0.3 * detail, 0, 255).round().astype(np.uint8)).texture == 'plain'
