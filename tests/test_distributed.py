"""The optional Ray engine: a tiny featurization and a tiny backtest through a local Ray equal
the serial results; an unreachable cluster gets one sentence. Skipped without ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from activemil.data import DATASETS, data_path
from activemil.distributed import use_engine
from activemil.errors import EngineError, InputError
from activemil.featurize import featurize_pool, get_encoder
from activemil.simulate.runner import simulate
from activemil.simulate.scenario import Scenario
from activemil.space import DesignSpace
from activemil.structures import get_recipe

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starting a local Ray takes 10-20 s


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


def test_featurization_through_ray_equals_serial(local_ray) -> None:
    pool = DesignSpace(("Ag", "Ir", "Pd"), step=0.25).enumerate()
    recipe, enc = get_recipe("fcc111"), get_encoder("zones")
    serial = featurize_pool(pool, recipe, enc, n_sites=12)
    dist = featurize_pool(pool, recipe, enc, n_sites=12, engine="ray", chunk_size=3)
    with use_engine("ray"):
        ctx = featurize_pool(pool, recipe, enc, n_sites=12, chunk_size=4)
    for other in (dist, ctx):
        assert other.ids == serial.ids
        for name in ("features", "mask", "weights", "site_index", "site_kind", "side"):
            np.testing.assert_array_equal(getattr(other, name), getattr(serial, name))


def test_backtest_through_ray_equals_serial(local_ray) -> None:
    df = pd.read_csv(data_path(DATASETS["agirpdptru-orr"][0])).sample(n=60, random_state=0)
    sc = Scenario.from_table(df.reset_index(drop=True), "activity", "maximize", name="tiny")
    serial = simulate(sc, ["random"], seeds=2, rounds=2, budget=3, plots=False)
    dist = simulate(sc, ["random"], seeds=2, rounds=2, budget=3, plots=False, engine="ray")
    pd.testing.assert_frame_equal(serial.records, dist.records)


def test_unreachable_cluster_is_one_sentence() -> None:  # no Ray started: fast
    pool = DesignSpace(("Ag", "Ir"), step=0.5).enumerate()
    if ray.is_initialized():
        ray.shutdown()
    with pytest.raises(EngineError) as e:
        featurize_pool(pool, get_recipe("fcc111"), get_encoder("zones"), n_sites=4,
                       engine="ray", ray_address="127.0.0.1:1")
    assert "\n" not in str(e.value) and "--ray-address" in str(e.value)
    with pytest.raises(InputError):
        featurize_pool(pool, get_recipe("fcc111"), get_encoder("zones"), engine="spark")


def test_worker_death_is_retried_then_one_sentence(local_ray, tmp_path) -> None:
    from activemil.distributed import ray_map

    marker = str(tmp_path / "died")

    def flaky(x: int) -> int:  # the first attempt of item 1 kills its worker process
        import os

        if x == 1 and not os.path.exists(marker):
            open(marker, "w").close()
            os._exit(1)
        return x * x

    assert ray_map(flaky, [0, 1, 2], max_retries=2) == [0, 1, 4]

    def dies(x: int) -> int:
        import os

        os._exit(1)

    with pytest.raises(EngineError) as e:
        ray_map(dies, [0], max_retries=0)
    assert "\n" not in str(e.value)
