import numpy as np
import pytest

from activemil.errors import InputError
from activemil.featurize import FeatureCache, expected_environments, featurize_pool, get_encoder
from activemil.space import DesignSpace
from activemil.structures import get_recipe

ELEMENTS = ("Ag", "Ir", "Pd", "Pt", "Ru")


@pytest.fixture(scope="module")
def pool():
    return DesignSpace(ELEMENTS, step=0.25).enumerate()


def test_zones_features_are_zone_counts(pool):
    recipe, enc = get_recipe("fcc111"), get_encoder("zones")
    s = recipe.build(pool.composition(10), seed=3)
    f = enc.encode(s, ELEMENTS)
    assert f.shape == (len(s.sites), enc.dim(recipe, ELEMENTS)) == (72, 52)
    for i, site in enumerate(s.sites):
        counts = s.zone_counts(site, ELEMENTS)
        if site.kind == "ontop":
            assert f[i, 0] == 1 and np.array_equal(f[i, 2:22], counts) and not f[i, 22:].any()
        else:
            assert f[i, 1] == 1 and np.array_equal(f[i, 22:], counts) and not f[i, 2:22].any()


def test_cache_returns_identical_arrays_without_recomputation(pool, tmp_path, monkeypatch):
    recipe, enc = get_recipe("fcc111"), get_encoder("zones")
    first = featurize_pool(pool, recipe, enc, cache_dir=tmp_path, n_sites=16)
    calls = []
    monkeypatch.setattr(enc, "encode", lambda *a: calls.append(a))
    second = featurize_pool(pool, recipe, enc, cache_dir=tmp_path, n_sites=16)
    assert calls == []
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.site_index, second.site_index)
    # a different seed is a different key
    monkeypatch.undo()
    third = featurize_pool(pool, recipe, enc, cache_dir=tmp_path, n_sites=16, seed=1)
    assert not np.array_equal(first.features, third.features)


def test_cache_survives_corrupt_entry(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.put("ab" * 32, {"x": np.arange(3)})
    cache.path("ab" * 32).write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None


def test_pool_bags_shape_side_and_strata(pool):
    bags = featurize_pool(pool, get_recipe("fcc111"), get_encoder("zones"), n_sites=20)
    assert bags.features.shape == (len(pool), 20, 52)
    np.testing.assert_allclose(bags.weights.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(bags.side, pool.fractions, rtol=1e-6)
    assert np.array_equal(bags.strata, pool.n_present)


def test_parallel_equals_serial(pool):
    recipe, enc = get_recipe("fcc111"), get_encoder("zones")
    sub = pool.subset(range(12))
    a = featurize_pool(sub, recipe, enc, jobs=1)
    b = featurize_pool(sub, recipe, enc, jobs=2, chunk_size=4)
    np.testing.assert_array_equal(a.features, b.features)


def test_expected_environments_are_exact_probabilities():
    recipe = get_recipe("fcc111")
    kinds, counts, p = expected_environments(
        recipe, {"Ag": 0.5, "Pd": 0.5}, ["Ag", "Pd"], k=100_000, n_draws=200_000
    )
    # with enough draws every on-top environment of a binary appears:
    # 1+6+3+3 atoms -> (2)(7)(4)(4) = 224 distinct count vectors, total probability 1/2
    on = [i for i, k in enumerate(kinds) if k == "ontop"]
    assert len(on) == 224
    assert p[on].sum() == pytest.approx(0.5) and p.sum() == pytest.approx(1.0)
    assert np.all(np.diff(p[on]) <= 1e-15)
    # all on-top environments found: the weights are the exact probabilities
    # (here: site Ag, 1A all Ag, ... has probability 0.5**13, times p(kind)=1/2)
    assert p[on].min() == pytest.approx(0.5**13 * 0.5, rel=1e-9)


def test_expected_bags_keep_each_site_kind():
    recipe = get_recipe("fcc111")
    comp = {"Ag": 0.2, "Ir": 0.2, "Pd": 0.2, "Pt": 0.2, "Ru": 0.2}
    kinds, counts, p = expected_environments(recipe, comp, list(ELEMENTS), k=64)
    assert kinds.count("ontop") == kinds.count("fcc") == 32
    assert p[[i for i, k in enumerate(kinds) if k == "fcc"]].sum() == pytest.approx(0.5)


def test_expected_bags_need_zones_encoder(pool):
    from activemil.featurize import Encoder

    class Other(Encoder):
        name = "other"

        def dim(self, recipe, elements):
            return 1

        def encode(self, surface, elements):
            return np.zeros((len(surface.sites), 1), np.float32)

    with pytest.raises(InputError, match="zones encoder"):
        featurize_pool(pool, get_recipe("fcc111"), Other(), mode="expected")


def test_encoder_version_is_part_of_the_cache_key(pool, tmp_path, monkeypatch):
    recipe, enc = get_recipe("fcc111"), get_encoder("zones")
    sub = pool.subset(range(3))
    featurize_pool(sub, recipe, enc, cache_dir=tmp_path, mode="expected", n_sites=8)
    monkeypatch.setattr(type(enc), "version", "999")
    cache_misses = []
    import activemil.featurize.pool as pool_mod

    real = pool_mod._bag_for
    monkeypatch.setattr(pool_mod, "_bag_for", lambda *a: cache_misses.append(1) or real(*a))
    featurize_pool(sub, recipe, enc, cache_dir=tmp_path, mode="expected", n_sites=8)
    assert len(cache_misses) == 3
