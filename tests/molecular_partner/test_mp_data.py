"""Cleaning rules, outcomes on a hand-made table, splits by cell, the AWD layout."""

import numpy as np
import pandas as pd
import pytest
import torch

from molecular_partner.data import (
    TraceDataset,
    add_outcomes,
    build_dataset,
    downsample,
    hotspot_flags,
    lifetime_gates,
    load_awd_table,
    split_cells,
)
from molecular_partner.simulate import SimulationConfig, simulate_cells


def _table():
    # Four hand-written tracks in two cells.
    return pd.DataFrame(
        {
            "cell": ["a", "a", "b", "b"],
            "lifetime_s": [20.0, 30.0, 25.0, 18.0],
            "catIdx": [1, 2, 1, 1],
            "X": [np.arange(1.0, 5.0)] * 4,
            "Y": [
                np.array([10.0, 500.0, 700.0, 5.0]),  # two consecutive significant
                np.array([10.0, 800.0, 20.0, 1000.0]),  # Y_max > 973, not consecutive
                np.array([50.0, 60.0, 70.0, 80.0]),  # nothing significant
                np.array([300.0, 10.0, 10.0, 400.0]),
            ],  # isolated significant frames
            "pval_Ar_Y": [
                np.array([0.5, 0.01, 0.02, 0.9]),
                np.array([0.5, 0.01, 0.5, 0.01]),
                np.array([0.5, 0.5, 0.5, 0.5]),
                np.array([0.01, 0.5, 0.5, 0.04]),
            ],
        }
    )


def test_outcomes_by_hand():
    out = add_outcomes(_table())
    assert out["y_consec_sig"].tolist() == [True, False, False, False]
    assert out["y_conservative_thresh"].tolist() == [False, True, False, False]
    assert out["y_consec_thresh"].tolist() == [True, True, False, False]
    assert out["y"].tolist() == [True, True, False, False]
    assert out["Y_sig_mean"].tolist() == [600.0, 900.0, 0.0, 350.0]


def test_sig_mean_normalized_by_hand():
    t = _table()
    t["X"] = [np.arange(1.0, 41.0)] * 4
    for col in ("Y", "pval_Ar_Y"):
        t[col] = [np.resize(v, 40) for v in t[col]]
    t["lifetime_s"] = [40.0] * 4
    ds = build_dataset(t, test_cells=["b"], apply_gates=False)
    got = ds.table.set_index("Y_sig_mean")["Y_sig_mean_normalized"]
    # Cell a: values 600, 900 -> z = -1, +1; cell b: 0, 350 -> -1, +1 (population SD).
    assert got[600.0] == pytest.approx(-1.0) and got[900.0] == pytest.approx(1.0)
    assert got[0.0] == pytest.approx(-1.0) and got[350.0] == pytest.approx(1.0)


def test_hotspot_rule():
    # Two runs with isolated significant frames between: the reference's "repeated events".
    assert hotspot_flags(np.array([1, 1, 0, 1, 0, 1, 0, 1, 1], bool))
    # Two runs separated only by non-significant frames do not count.
    assert not hotspot_flags(np.array([1, 1, 1, 0, 0, 0, 1, 1, 1], bool))
    assert not hotspot_flags(np.array([1, 0, 1, 0, 1, 0, 1], bool))


def test_gates_and_downsample():
    assert lifetime_gates(
        np.array([3, 4, 5, 20, 30, 100, 200]), np.array([0, 0, 0, 1, 0, 1, 1])
    ) == (5.0, 100.0)
    assert downsample(np.array([1.0, np.nan, 2.0]), 4).tolist() == [1.0, 2.0, 0.0, 0.0]
    x = np.arange(100.0)
    assert downsample(x).tolist() == [x[int(99 * i / 39)] for i in range(40)]


def test_cleaning_drops_categories_short_and_hotspots():
    t = _table()
    t.loc[1, "catIdx"] = 5
    t.loc[2, "lifetime_s"] = 2.0
    ds = build_dataset(t, test_cells=["b"], apply_gates=False, lifetime_threshold=0)
    assert ds.meta["n_valid"] == 2


@pytest.fixture(scope="module")
def sim_tracks():
    return simulate_cells(5, SimulationConfig(n_frames=200, shape=(64, 64), n_pits=400), seed=3)[0]


def test_splits_by_cell_are_disjoint(sim_tracks):
    ds = build_dataset(sim_tracks, test_fraction=0.4, seed=1)
    t = ds.table
    train, test = set(t.loc[t.split == "train", "cell"]), set(t.loc[t.split == "test", "cell"])
    assert train and test and not (train & test)
    s1 = split_cells(sim_tracks["cell"], seed=7)
    assert s1 == split_cells(sim_tracks["cell"], seed=7)
    # Per-cell normalisation: each cell's traces have mean 0 and SD 1 over all points.
    for _, g in t.groupby("cell"):
        block = np.stack(g["X_same_length_normalized"])
        assert block.mean() == pytest.approx(0.0, abs=1e-9)
        assert block.std() == pytest.approx(1.0, abs=1e-9)
    assert (t["lifetime_s"] > 15).all() and not t["hotspots"].any()
    # Gates come from training cells only: moving test cells changes nothing in them.
    assert ds.meta["thresh_short"] <= 15 < ds.meta["thresh_long"]


def test_torch_dataset_and_awd_layout(sim_tracks, tmp_path):
    from molecular_partner.data import read_dataset, write_dataset

    ds = build_dataset(sim_tracks, test_cells=["cell5"])
    write_dataset(ds, tmp_path)
    table = read_dataset(tmp_path)
    data = TraceDataset(table, split="train")
    x, y = data[0]
    assert x.shape == (1, 40) and x.dtype == torch.float32 and y.ndim == 0
    assert len(data) == ds.meta["n_train"]
    binary = TraceDataset(table, target="y_consec_thresh", split="test")
    assert set(binary.y.tolist()) <= {0.0, 1.0}


def test_awd_layout_checks(tmp_path):
    good = pd.DataFrame(
        {
            "X_same_length_normalized": [np.zeros(40)],
            "Y_sig_mean_normalized": [0.1],
            "y_consec_thresh": [True],
        }
    )
    assert len(load_awd_table(good)) == 1
    with pytest.raises(ValueError, match="length 40"):
        load_awd_table(good.assign(X_same_length_normalized=[np.zeros(39)]))
    with pytest.raises(ValueError, match="Y_sig_mean_normalized"):
        load_awd_table(good.drop(columns=["Y_sig_mean_normalized", "y_consec_thresh"]))
    with pytest.raises(ValueError, match="pickle"):
        load_awd_table(tmp_path / "df_py36.pkl")


def test_nan_tracks_and_bad_cells():
    t = _table()
    t.at[0, "X"] = np.array([1.0, np.nan, 2.0, 3.0])
    with pytest.warns(UserWarning, match="NaN"):
        out = build_dataset(t, test_cells=["b"], apply_gates=False, lifetime_threshold=0)
    assert out.meta["n_valid"] == 3
    all_nan = t.assign(X=[np.full(4, np.nan)] * 4)
    with pytest.raises(ValueError, match="NaN"):
        build_dataset(all_nan, test_cells=["b"])
    # A cell with no valid track: a warning naming it, the rest proceeds.
    t2 = pd.concat([_table(), _table().assign(cell="c", catIdx=3)], ignore_index=True)
    with pytest.warns(UserWarning, match="'c'"):
        ds = build_dataset(t2, test_cells=["b"], apply_gates=False, lifetime_threshold=0)
    assert set(ds.table["cell"]) == {"a", "b"}
    with pytest.raises(ValueError, match="missing required columns"):
        build_dataset(_table().drop(columns=["pval_Ar_Y"]))
