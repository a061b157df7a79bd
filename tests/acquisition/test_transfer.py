"""Transfer from prior tables: union of elements, per-table scaling, the stacked posterior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from activemil.acquisition import propose as PR
from activemil.acquisition.transfer import PriorData, pool_in_union, prior_mean
from activemil.errors import InputError
from activemil.featurize import BagSet
from activemil.space import DesignSpace


def f(fr: np.ndarray, elements: tuple[str, ...]) -> np.ndarray:
    """A smooth function of the Ni and Fe fractions, whatever the other elements are."""
    col = {e: i for i, e in enumerate(elements)}
    ni, fe = fr[:, col["Ni"]], fr[:, col["Fe"]]
    return np.exp(-6 * ((ni - 0.5) ** 2 + (fe - 0.3) ** 2))


def composition_bagset(pool) -> BagSet:
    fr = pool.fractions.astype(np.float32)
    return BagSet.from_instances(ids=pool.ids, features=[r[None] for r in fr], side=fr,
                                 strata=pool.n_present, meta={})


def test_union_of_elements_and_per_table_scaling() -> None:
    a = np.array([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.2, 0.8], [0.6, 0.4]])
    p = PriorData.from_tables([("a", ("Ni", "Mn"), a, np.array([1.0, 2.0, 3.0])),
                               ("b", ("Ni", "La"), b, np.array([100.0, 300.0]))])
    assert p.elements == ("Ni", "Mn", "La")
    assert p.union(("Fe", "Ni")) == ("Fe", "Ni", "Mn", "La")
    X = p.in_space(("Fe", "Ni"))
    np.testing.assert_allclose(X[:, 0], 0.0)  # Fe is in no prior table
    np.testing.assert_allclose(X[3], [0.0, 0.2, 0.0, 0.8])
    z = p.oriented(maximize=False)
    for t in (0, 1):  # each table standardised on its own, sign flipped for minimisation
        m = p.task == t
        assert abs(z[m].mean()) < 1e-12 and abs(z[m].std() - 1) < 1e-12
    assert z[0] > z[2]  # smaller is better
    pool = np.array([[0.3, 0.7]])
    np.testing.assert_allclose(pool_in_union(("Fe", "Ni"), pool, p), [[0.3, 0.7, 0.0, 0.0]])


def test_the_prior_mean_carries_the_shared_function_to_a_new_element_set() -> None:
    prior_pool = DesignSpace(("Ni", "Fe", "Ce", "La"), step=0.1).enumerate()
    p = PriorData.from_tables([("plate", prior_pool.elements, prior_pool.fractions,
                                3.0 + 2.0 * f(prior_pool.fractions, prior_pool.elements))])
    target = DesignSpace(("Ni", "Fe", "Ta", "Cu"), step=0.1).enumerate()
    z, notes = prior_mean(p, target.elements, target.fractions, maximize=True)
    assert z.shape == (len(target),)
    rho = spearmanr(z, f(target.fractions, target.elements))[0]
    assert rho > 0.8, rho
    assert "2 of the campaign's 4 elements" in notes[-1]
    z_min, _ = prior_mean(p, target.elements, target.fractions, maximize=False)
    assert spearmanr(z_min, z)[0] < -0.99  # orientation follows the campaign's direction


def test_build_posterior_chooses_transfer_when_the_prior_explains_the_target() -> None:
    target = DesignSpace(("Ni", "Fe", "Co"), step=0.1).enumerate()
    truth = f(target.fractions, target.elements)
    prior_pool = DesignSpace(("Ni", "Fe", "Mn"), step=0.1).enumerate()
    p = PriorData.from_tables([("p", prior_pool.elements, prior_pool.fractions,
                                f(prior_pool.fractions, prior_pool.elements))])
    z, _ = prior_mean(p, target.elements, target.fractions, maximize=True)
    bags = composition_bagset(target)
    rows = np.random.default_rng(0).choice(len(target), 10, replace=False)
    ids = [target.ids[i] for i in rows]
    post, _ = PR.build_posterior(bags, ids, truth[rows], transfer=z)
    assert post.choice["model"] == "transfer" and post.prior
    assert post.choice["cv_mse"]["transfer"] < post.choice["cv_mse"]["gp"]
    pinned, _ = PR.build_posterior(bags, ids, truth[rows], transfer=z, model="gp")
    assert pinned.choice["model"] == "gp" and pinned.choice["pinned"] is True
    assert pinned.choice["cv_mse"] == {"gp": pytest.approx(post.choice["cv_mse"]["gp"])}
    # CRPS and rank agreement are recorded beside the criterion, for every variant
    assert set(post.choice["cv_crps"]) == set(post.choice["cv_spearman"]) == {"gp", "transfer"}
    assert all(v > 0 for v in post.choice["cv_crps"].values())
    assert post.choice["cv_spearman"]["transfer"] > 0.5
    with pytest.raises(InputError, match="needs prior tables"):
        PR.build_posterior(bags, ids, truth[rows], model="transfer")
    with pytest.raises(InputError, match="one finite value per pool row"):
        PR.build_posterior(bags, ids, truth[rows], transfer=z[:-1])
    # the transfer posterior is the same BoTorch GP: a fantasy shrinks the variance there
    r = int(np.setdiff1d(np.arange(len(target)), rows)[0])
    x = post.X[r:r + 1]
    with torch.no_grad():
        before = float(post.model.posterior(x).variance)
        after = float(post.condition_believer(np.array([r])).posterior(x).variance)
    assert after < before
    assert after == pytest.approx(before * post.noise / (before + post.noise), rel=1e-4)
