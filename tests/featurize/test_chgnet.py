"""CHGNet encoder: shape/layout, invariances, determinism, agreement with CHGNet's own API."""

from __future__ import annotations

import pickle
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from activemil.errors import InputError
from activemil.featurize.chgnet import CHGNetEncoder, load_chgnet
from activemil.structures.fcc111 import FCC111Recipe
from activemil.structures.oxide import CationSublatticeOxideRecipe
from activemil.structures.oxyhydroxide import OxyhydroxideRecipe

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")
COMP = {"Ag": 0.2, "Ir": 0.2, "Pd": 0.2, "Pt": 0.2, "Ru": 0.2}
F = 64


@pytest.fixture(scope="module")
def encoder() -> CHGNetEncoder:
    torch.set_num_threads(1)
    enc = CHGNetEncoder()
    load_chgnet(enc.model_name)  # load once for the module
    return enc


@pytest.fixture(scope="module")
def recipe() -> FCC111Recipe:
    return FCC111Recipe(size=(4, 4, 3))


@pytest.fixture(scope="module")
def surface(recipe):
    return recipe.build(COMP, seed=7)


@pytest.fixture(scope="module")
def features(encoder, surface) -> np.ndarray:
    return encoder.encode(surface, ELEMENTS)


def test_shape_dim_and_layout(encoder, recipe, surface, features):
    d = encoder.dim(recipe, ELEMENTS)
    assert d == 2 + 6 * F
    assert features.shape == (len(surface.sites), d) and features.dtype == np.float32
    assert np.isfinite(features).all()
    for i, site in enumerate(surface.sites):
        onehot = features[i, :2]
        assert onehot.tolist() == ([1.0, 0.0] if site.kind == "ontop" else [0.0, 1.0])
        n_zones = len(surface.zone_layout[site.kind])
        assert np.abs(features[i, 2:2 + n_zones * F]).sum(axis=0).any()
        assert not features[i, 2 + n_zones * F:].any()  # padding slots of on-top sites


def test_zone_slots_are_means_of_atom_embeddings(encoder, surface, features):
    emb = encoder.atom_embeddings(surface)
    assert emb.shape == (len(surface.atoms), F)
    for i in (0, len(surface.sites) - 1):
        site = surface.sites[i]
        for z, (zone, size) in enumerate(surface.zone_layout[site.kind]):
            assert len(site.zones[zone]) == size
            want = emb[list(site.zones[zone])].mean(axis=0)
            np.testing.assert_allclose(features[i, 2 + z * F:2 + (z + 1) * F], want, atol=1e-6)


def test_dim_known_without_running_the_model():
    enc = CHGNetEncoder(layer="conv3", pool="center")
    assert enc.dim(OxyhydroxideRecipe(), ["Co", "Ni"]) == 1 + F
    assert CHGNetEncoder().dim(OxyhydroxideRecipe(), ["Co"]) == 1 + 4 * F
    assert CHGNetEncoder().dim(CationSublatticeOxideRecipe(), ["Mg"]) == 1 + 5 * F


def test_deterministic(encoder, surface, features):
    again = encoder.encode(surface, ELEMENTS)
    np.testing.assert_array_equal(features, again)


def test_independent_of_vacuum_thickness(encoder, features):
    thick = FCC111Recipe(size=(4, 4, 3), vacuum=20.0).build(COMP, seed=7)
    np.testing.assert_allclose(encoder.encode(thick, ELEMENTS), features, atol=1e-4)


def test_rotation_and_translation_invariant(encoder, surface, features):
    atoms = surface.atoms.copy()
    atoms.rotate(37.0, (0.3, -0.5, 0.8), rotate_cell=True)
    atoms.rotate(121.0, "z", rotate_cell=True)
    atoms.translate((1.3, -2.1, 0.7))
    moved = replace(surface, atoms=atoms)
    np.testing.assert_allclose(encoder.encode(moved, ELEMENTS), features, atol=1e-4)


def test_features_see_chemistry(encoder, surface, features):
    atoms = surface.atoms.copy()
    t = surface.sites[0].zones["site"][0]
    sym = atoms.get_chemical_symbols()
    sym[t] = "Pt" if sym[t] != "Pt" else "Ag"
    atoms.set_chemical_symbols(sym)
    changed = encoder.encode(replace(surface, atoms=atoms), ELEMENTS)
    assert np.abs(changed[0] - features[0]).max() > 1e-2


def test_conv3_layer_matches_chgnet_return_atom_feas(surface):
    from pymatgen.io.ase import AseAtomsAdaptor

    enc = CHGNetEncoder(layer="conv3")
    ours = enc.atom_embeddings(surface)
    with torch.inference_mode():
        ref = load_chgnet("0.3.0").predict_structure(
            AseAtomsAdaptor.get_structure(surface.atoms), task="e", return_atom_feas=True
        )["atom_fea"]
    np.testing.assert_allclose(ours, ref, atol=1e-5)
    assert np.abs(ours - CHGNetEncoder().atom_embeddings(surface)).max() > 1e-2


def test_oxide_recipes_encode(encoder):
    for recipe, comp in ((OxyhydroxideRecipe(), {"Co": 0.75, "Ni": 0.125, "Fe": 0.125}),
                         (CationSublatticeOxideRecipe(size=(3, 3), layers=2),
                          {"Mg": 0.2, "Co": 0.2, "Ni": 0.2, "Cu": 0.2, "Zn": 0.2})):
        s = recipe.build(comp, seed=1)
        f = encoder.encode(s, list(comp))
        assert f.shape == (len(s.sites), encoder.dim(recipe, list(comp)))
        assert np.isfinite(f).all() and (f[:, 0] == 1).all()


def test_version_settings_pickle_and_bad_arguments(encoder):
    assert "0.3.0" in encoder.version and "last" in encoder.version
    assert CHGNetEncoder(layer="conv3").version != encoder.version
    assert encoder.cache_token()["layer"] == "last"
    blob = pickle.dumps(encoder)
    assert len(blob) < 10_000  # the model is not pickled; workers reload it lazily
    assert pickle.loads(blob).version == encoder.version
    with pytest.raises(InputError, match="layer"):
        CHGNetEncoder(layer="conv9")
    with pytest.raises(InputError, match="pool"):
        CHGNetEncoder(pool="sum")


def test_does_not_import_fairchem():
    code = (
        "import sys, activemil.featurize.chgnet as m; m.CHGNetEncoder().dim("
        "__import__('activemil.structures.fcc111', fromlist=['x']).FCC111Recipe(), ['Pt']); "
        "sys.exit(any(k.startswith('fairchem') for k in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False, timeout=120).returncode == 0
