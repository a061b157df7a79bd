"""UMA encoder: clear messages without the extra/checkpoint (everywhere); with fairchem-core, a
tiny randomly initialised UMA-architecture checkpoint loaded through the real load_predict_unit."""

from __future__ import annotations

import pickle
from dataclasses import replace

import numpy as np
import pytest
import torch

from activemil.errors import InputError, MissingDependencyError
from activemil.featurize import get_encoder, uma
from activemil.structures.fcc111 import FCC111Recipe
from activemil.structures.oxyhydroxide import OxyhydroxideRecipe

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")
COMP = {"Ag": 0.2, "Ir": 0.2, "Pd": 0.2, "Pt": 0.2, "Ru": 0.2}
C = 16  # sphere_channels of the tiny test backbone


def one_sentence(msg: str) -> bool:
    return "\n" not in msg and msg.endswith(".") and msg.count(". ") == 0


# ---------------------------------------------------------------- runs everywhere


def test_missing_extra_message(monkeypatch, tmp_path):
    monkeypatch.setattr(uma, "fairchem_available", lambda: False)
    ckpt = tmp_path / "uma.pt"
    ckpt.write_bytes(b"x")
    with pytest.raises(MissingDependencyError) as err:
        uma.UMAEncoder(ckpt)
    msg = str(err.value)
    assert 'pip install "activemil[uma]"' in msg and "fairchem-core" in msg and one_sentence(msg)
    with pytest.raises(MissingDependencyError, match="activemil\\[uma\\]"):
        get_encoder("uma", checkpoint=ckpt)


def test_missing_checkpoint_message(monkeypatch, tmp_path):
    monkeypatch.setattr(uma, "fairchem_available", lambda: True)
    missing = tmp_path / "nowhere" / "uma-s-1p2.pt"
    with pytest.raises(MissingDependencyError) as err:
        uma.UMAEncoder(missing)
    msg = str(err.value)
    assert str(missing) in msg and "--uma-checkpoint PATH" in msg and one_sentence(msg)
    for empty in (None, ""):
        with pytest.raises(MissingDependencyError, match="--uma-checkpoint PATH") as err:
            uma.UMAEncoder(empty)
        assert one_sentence(str(err.value))


def test_fairchem_available_matches_import():
    try:
        import fairchem.core  # noqa: F401

        importable = True
    except ImportError:
        importable = False
    assert uma.fairchem_available() is importable


# ---------------------------------------------------------------- needs fairchem-core


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    pytest.importorskip("fairchem.core")
    torch.set_num_threads(1)
    return uma.write_random_uma_checkpoint(
        tmp_path_factory.mktemp("uma") / "tiny-uma.pt", sphere_channels=C, hidden_channels=C
    )


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return uma.UMAEncoder(checkpoint)


@pytest.fixture(scope="module")
def surface():
    return FCC111Recipe(size=(4, 4, 3)).build(COMP, seed=2)


@pytest.fixture(scope="module")
def features(encoder, surface):
    return encoder.encode(surface, ELEMENTS)


def test_dim_read_from_checkpoint_without_loading(checkpoint):
    enc = uma.UMAEncoder(checkpoint)
    assert enc.dim(FCC111Recipe(), ELEMENTS) == 2 + 6 * C
    assert enc.dim(OxyhydroxideRecipe(), ["Co"]) == 1 + 4 * C


def test_encode_shape_layout_deterministic(encoder, surface, features):
    assert features.shape == (len(surface.sites), encoder.dim(FCC111Recipe(), ELEMENTS))
    assert features.dtype == np.float32 and np.isfinite(features).all()
    kinds = np.array([s.kind for s in surface.sites])
    np.testing.assert_array_equal(features[:, 0], kinds == "ontop")
    ontop = kinds == "ontop"
    assert not features[ontop, 2 + 4 * C:].any()  # on-top sites have 4 of 6 zone slots
    assert np.abs(features[:, 2:2 + C]).sum() > 0
    # fairchem's graph/scatter kernels are not bit-reproducible: equal to float32 noise
    np.testing.assert_allclose(encoder.encode(surface, ELEMENTS), features, atol=1e-5)


def test_embeddings_match_a_backbone_hook_during_predict(encoder, surface):
    """Our direct no-force backbone call == L=0 node embeddings seen by a forward hook on the
    backbone while fairchem's own predict() runs (energy, forces and stress)."""
    from fairchem.core.datasets.atomic_data import AtomicData

    ours = encoder.atom_embeddings(surface)
    unit = encoder.predict_unit
    captured = {}

    def grab(_module, _inputs, out) -> None:  # must return None (else it replaces the output)
        captured["emb"] = out["node_embedding"].detach().clone()

    hook = unit.model.module.backbone.register_forward_hook(grab)
    try:
        pred = unit.predict(AtomicData.from_ase(surface.atoms, task_name="oc20",
                                                r_data_keys=["spin", "charge"]))
    finally:
        hook.remove()
    assert pred["forces"].shape == (len(surface.atoms), 3)
    np.testing.assert_allclose(ours, captured["emb"][:, 0, :].numpy(), atol=1e-5)


def test_rotation_and_vacuum_invariant(encoder, surface, features):
    atoms = surface.atoms.copy()
    atoms.rotate(33.0, (0.2, 0.9, -0.4), rotate_cell=True)
    atoms.translate((0.4, -1.1, 2.0))
    np.testing.assert_allclose(encoder.encode(replace(surface, atoms=atoms), ELEMENTS),
                               features, atol=1e-4)
    thick = FCC111Recipe(size=(4, 4, 3), vacuum=20.0).build(COMP, seed=2)
    np.testing.assert_allclose(encoder.encode(thick, ELEMENTS), features, atol=1e-4)


def test_task_fixed_per_recipe_and_overridable(checkpoint, encoder, surface, features):
    assert encoder.task_for(surface) == "oc20"
    ooh = OxyhydroxideRecipe().build({"Co": 0.75, "Ni": 0.25}, seed=0)
    assert encoder.task_for(ooh) == "omat"
    f_ooh = encoder.encode(ooh, ["Co", "Ni"])
    assert f_ooh.shape == (16, 1 + 4 * C) and np.isfinite(f_ooh).all()
    omat = uma.UMAEncoder(checkpoint, task="omat")
    assert np.abs(omat.encode(surface, ELEMENTS) - features).max() > 1e-4
    assert omat.cache_token() != encoder.cache_token()
    with pytest.raises(InputError, match="oc20, omat, omol"):
        uma.UMAEncoder(checkpoint, task="odac").encode(surface, ELEMENTS)


def test_version_pickle_and_rng_untouched(checkpoint, encoder, tmp_path):
    assert encoder.version.startswith("uma-tiny-uma-") and encoder.sha256[:12] in encoder.version
    clone = pickle.loads(pickle.dumps(encoder))
    assert clone.version == encoder.version and len(pickle.dumps(encoder)) < 10_000
    other = uma.write_random_uma_checkpoint(tmp_path / "other.pt", seed=1)
    assert uma.UMAEncoder(other).sha256 != encoder.sha256
    np.random.seed(123)
    expected = np.random.get_state()[1].copy()
    uma.load_uma(other.resolve())  # fairchem reseeds global RNGs on load; we restore them
    np.testing.assert_array_equal(np.random.get_state()[1], expected)


def test_unloadable_checkpoint_is_one_sentence(tmp_path):
    pytest.importorskip("fairchem.core")
    bad = tmp_path / "bad.pt"
    torch.save({"not": "a checkpoint"}, bad)
    with pytest.raises(InputError, match="could not be loaded") as err:
        uma.UMAEncoder(bad).encode(FCC111Recipe(size=(4, 4, 3)).build(COMP), ELEMENTS)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="no readable model config") as err:
        uma.UMAEncoder(bad).dim(FCC111Recipe(), ELEMENTS)
    assert one_sentence(str(err.value))
