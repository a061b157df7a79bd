"""propose_batch over surrogates: the documented contract (a fake) and the real surrogates."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_tables

from activemil.acquisition import POLICIES, propose_batch, tables_from_surrogate
from activemil.errors import InputError
from activemil.featurize.bags import BagSet
from activemil.surrogates.prediction import Prediction


class FakeSurrogate:
    """Implements only what docs/CONTRACTS.md promises, from synthetic tables."""

    def __init__(self, t, with_oof: bool = True) -> None:
        self.t = t
        self.n_train = len(t.train_y)
        if with_oof:
            self.train_y = t.train_y
            self.oof_median = t.train_y - t.train_residual
            self.train_embedding = t.train_embedding

    def predict(self, bags: BagSet) -> Prediction:
        idx = self.t.index_of()
        rows = np.asarray([idx[i] for i in bags.ids])
        return Prediction(
            ids=tuple(bags.ids), quantiles=self.t.quantiles[rows],
            member_quantiles=self.t.member_quantiles[:, rows],
            attention=self.t.attention[rows], embedding=self.t.embedding[rows],
            strata=np.asarray(self.t.strata)[rows],
        )


def _bags(t) -> BagSet:
    rng = np.random.default_rng(0)
    k = t.attention.shape[1]
    return BagSet.from_instances(
        ids=t.ids, features=[rng.normal(size=(k, 3)).astype(np.float32) for _ in t.ids],
        side=np.zeros((t.n, 2), np.float32), strata=np.asarray(t.strata),
        site_index=list(t.site_index), site_kind=list(t.site_kind),
        meta={"site_kinds": ["ontop", "fcc"]},
    )


def test_adapter_builds_the_same_tables_and_proposals() -> None:
    t = make_tables(n=120, seed=2)
    bags = _bags(t)
    got = tables_from_surrogate(FakeSurrogate(t), bags)
    np.testing.assert_allclose(got.member_quantiles, t.member_quantiles)
    np.testing.assert_allclose(got.train_residual, t.train_residual)
    assert got.site_kind_names == ("ontop", "fcc")
    measured = [t.ids[i] for i in t.meta["train_rows"]]
    for policy in POLICIES:
        df = propose_batch(FakeSurrogate(t), bags, 4, policy, exclude=measured,
                           pending=[t.ids[3]], seed=1)
        assert df["id"].nunique() == 4 and not set(df["id"]) & set(measured + [t.ids[3]])
        assert "predict_seconds" in df.attrs


def test_kg_needs_out_of_fold_residuals_other_policies_do_not() -> None:
    t = make_tables(n=80, seed=3)
    s = FakeSurrogate(t, with_oof=False)
    assert len(propose_batch(s, _bags(t), 3, "thompson")) == 3
    with pytest.raises(InputError, match="out-of-fold residuals"):
        propose_batch(s, _bags(t), 3, "kg")
    with pytest.raises(InputError, match="fitted surrogate"):
        propose_batch(object(), _bags(t), 3, "ucb")


@pytest.mark.parametrize("kind", ["gp", "mil"])
def test_real_surrogates_end_to_end(kind) -> None:
    surrogates = pytest.importorskip("activemil.surrogates")
    if not hasattr(surrogates, "make_surrogate"):
        pytest.skip("surrogates not available")
    bags, y, _ = surrogates.make_synthetic_bags(n_bags=120, bag_size=12, dim=6, seed=0)
    train = np.arange(50)
    kw = {} if kind == "gp" else {"n_folds": 3, "n_members": 2, "max_epochs": 20, "min_epochs": 5,
                                      "small_n_epochs": 20}
    s = surrogates.make_surrogate(kind, **kw).fit(bags.subset(train), y[train])
    measured = [bags.ids[i] for i in train]
    for policy in POLICIES:
        df = propose_batch(s, bags, 4, policy, maximize=False, exclude=measured,
                           pending=[bags.ids[60]], seed=0)
        assert df["id"].nunique() == 4
        assert not set(df["id"]) & set(measured + [bags.ids[60]])
        assert (df["top_sites"] == "").all() == (kind == "gp")
