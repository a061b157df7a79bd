"""Two-fidelity MIL: DFT site files supervise the site head next to the bag labels.

Small real task: 12 Ag-Ir-Pd-Pt-Ru compositions of the bundled ORR table as expected fcc111
zones bags, the bundled site files split into training and held-out sites."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from activemil.data import data_path
from activemil.errors import InputError
from activemil.featurize import featurize_pool, get_encoder
from activemil.featurize.sites import SiteSet, bundled_sites
from activemil.space import CandidatePool
from activemil.structures import get_recipe
from activemil.surrogates import MILRegressor, Surrogate, make_surrogate

torch.set_num_threads(1)

E5 = ["Ag", "Ir", "Pd", "Pt", "Ru"]
FAST = {"hidden": 32, "embed_dim": 16, "attention_dim": 8, "side_embed": 4, "max_epochs": 20,
        "min_epochs": 0, "small_n_epochs": 20, "site_pretrain_steps": 150}


@pytest.fixture(scope="module")
def task() -> tuple:
    df = pd.read_csv(data_path("agirpdptru_orr_grid.csv"))
    rows = np.random.default_rng(0).permutation(len(df))[:12]
    pool = CandidatePool.from_frame(df.iloc[rows].reset_index(drop=True), E5)
    bags = featurize_pool(pool, get_recipe("fcc111"), get_encoder("zones"), mode="expected",
                          n_sites=16)
    y = df["activity"].to_numpy(float)[rows]
    sites = bundled_sites(E5)
    perm = np.random.default_rng(1).permutation(len(sites))
    return bags, y, sites.subset(np.sort(perm[:3000])), sites.subset(np.sort(perm[3000:4000]))


def _site_rho(m, held: SiteSet) -> list[float]:
    pred = m.predict_sites(held)
    return [float(spearmanr(pred[held.task == k], held.energy[held.task == k]).statistic)
            for k in range(len(held.tasks))]


def test_site_loss_trains_the_site_head_on_real_dft_files(task) -> None:
    """Held-out DFT site energies: clearly ranked by the trained head, not by an untrained one."""
    bags, y, train, held = task
    m = MILRegressor(seed=0, **FAST).fit(bags, y, sites=train)
    assert m.site_tasks == ("OH_ontop", "O_fcc") and m.net.config.site_tasks == 2
    rho = _site_rho(m, held)
    assert min(rho) > 0.9, rho
    untrained = MILRegressor(seed=0, **{**FAST, "site_pretrain_steps": 0},
                             site_loss_weight=1e-9).fit(bags, y, sites=train)
    rho0 = _site_rho(untrained, held)
    assert all(r > r0 + 0.3 for r, r0 in zip(rho, rho0)), (rho, rho0)
    mae = np.abs(m.predict_sites(held) - held.energy).mean()
    assert mae < 0.1  # eV; the energies spread over ~1 eV
    # bag predictions keep the quantile machinery: 9 increasing quantiles
    q = m.predict(bags).quantiles
    assert q.shape == (len(bags), 9) and (np.diff(q, axis=1) > 0).all()


def test_bag_only_model_has_no_site_head(task) -> None:
    bags, y, train, held = task
    m = MILRegressor(seed=0, **FAST).fit(bags, y)
    assert not any(k.startswith("site_head") for k in m.net.state_dict())
    with pytest.raises(InputError, match="without site data"):
        m.predict_sites(held)
    # zero weight and no pretraining: the site data are ignored
    off = MILRegressor(seed=0, site_loss_weight=0.0, **{**FAST, "site_pretrain_steps": 0})
    assert off.fit(bags, y, sites=train).site_tasks == ()


def test_reproducible_under_a_seed(task) -> None:
    bags, y, train, held = task
    a = MILRegressor(seed=3, **FAST).fit(bags, y, sites=train)
    b = MILRegressor(seed=3, **FAST).fit(bags, y, sites=train)
    c = MILRegressor(seed=4, **FAST).fit(bags, y, sites=train)
    assert np.array_equal(a.predict(bags).quantiles, b.predict(bags).quantiles)
    assert np.array_equal(a.predict_sites(held), b.predict_sites(held))
    assert not np.array_equal(a.predict_sites(held), c.predict_sites(held))


@pytest.mark.parametrize("energy_input", ["none", "add", "replace"])
def test_save_load_round_trip(task, tmp_path: Path, energy_input: str) -> None:
    bags, y, train, held = task
    m = make_surrogate("mil", calibration="cv", n_folds=2, n_members=1, seed=0,
                       site_energy_input=energy_input, **FAST).fit(bags, y, sites=train)
    m.save(tmp_path / "m")
    back = Surrogate.load(tmp_path / "m")
    assert np.array_equal(back.predict(bags).quantiles, m.predict(bags).quantiles)
    assert np.array_equal(back.predict_sites(held), m.predict_sites(held))
    member = back.models[0].members[0]
    assert member.site_tasks == ("OH_ontop", "O_fcc") and member.site_fingerprint


def test_site_files_setting_reads_the_files_in_the_bags_layout(task, tmp_path: Path) -> None:
    """``site_files`` (JSON-serialisable, e.g. from campaign settings) equals passing sites=."""
    bags, y, _, held = task
    a = make_surrogate("mil", calibration="none", n_members=1, seed=0,
                       site_files=["OH_ontop", "O_fcc"], **FAST).fit(bags, y)
    b = make_surrogate("mil", calibration="none", n_members=1, seed=0, **FAST)
    b.fit(bags, y, sites=bundled_sites(E5))
    assert np.array_equal(a.predict_sites(held), b.predict_sites(held))
    a.save(tmp_path / "a")  # settings stay JSON
    h = make_surrogate("hybrid", calibration="none", n_members=1, seed=0, **FAST)
    assert h.fit(bags, y, sites=bundled_sites(E5)).predict_sites(held).shape == (len(held),)
    assert Surrogate.load(tmp_path / "a").settings()["site_files"] == ["OH_ontop", "O_fcc"]


def test_bad_site_inputs_are_one_sentence(task, tmp_path: Path) -> None:
    bags, y, train, _ = task
    with pytest.raises(InputError, match="instance head"):
        make_surrogate("gp", calibration="none").fit(bags, y, sites=train)
    with pytest.raises(InputError, match="site data need a MIL kind"):
        make_surrogate("gp", site_files=["OH_ontop"])
    other = bundled_sites(E5[::-1])
    with pytest.raises(InputError, match="element order"):
        MILRegressor(**FAST).fit(bags, y, sites=other)
    with pytest.raises(InputError, match="does not exist"):
        MILRegressor(site_files=[str(tmp_path / "no.csv")], **FAST).fit(bags, y)
    with pytest.raises(InputError, match="site_energy_input"):
        MILRegressor(site_energy_input="yes")
    with pytest.raises(InputError, match="site_files must be a list"):
        MILRegressor(site_files=[1, 2])
    with pytest.raises(InputError, match="SiteSet"):
        MILRegressor(**FAST).fit(bags, y, sites=np.zeros((3, 52)))  # type: ignore[arg-type]
    with pytest.raises(InputError, match="empty"):
        MILRegressor(**FAST).fit(bags, y, sites=train.subset([]))
