"""Cleaning rules, outcomes on a hand-made table, splits by cell, the AWD layout, and the
preparation of new cells' tracks by a data set's rules (one code path with build_dataset)."""

import numpy as np
import pandas as pd
import pytest
import torch
from pandas.testing import assert_frame_equal, assert_series_equal

from molecular_partner.data import (
    DROP_RULES,
    TraceDataset,
    add_outcomes,
    build_dataset,
    downsample,
    hotspot_flags,
    lifetime_gates,
    load_awd_table,
    preparation_rules,
    prepare_tracks,
    read_dataset,
    split_cells,
    validation_cells,
    write_dataset,
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


# --------------------------------------------------------------------------- new cells


def _track(tid, lifetime, cat=1, n=20, sig=(), cell="new1"):
    # A plain trace; ``sig`` marks the frames where auxilin is significant.
    pval = np.full(n, 0.5)
    pval[list(sig)] = 0.01
    return {
        "cell": cell,
        "track_id": tid,
        "catIdx": cat,
        "lifetime_s": lifetime,
        "X": np.arange(1.0, n + 1.0),
        "Y": np.where(pval < 0.05, 400.0, 10.0),
        "pval_Ar_Y": pval,
    }


def _rule_tracks():
    rows = [
        _track(1, 30.0),  # NaN clathrin frame (set below)
        _track(2, 1.0, cat=4),  # fails catIdx and lifetime > 2: catIdx comes first
        _track(3, 1.5),
        _track(4, 9.0, sig=[0, 1, 3, 5, 7, 8]),  # hotspot, and short: hotspot comes first
        _track(5, 9.0),
        _track(6, 130.0),
        _track(7, 14.5),
        _track(8, 30.0, sig=[10, 11]),
        _track(9, 40.0),
        _track(10, 30.0),  # one auxilin frame short (set below)
        _track(11, 14.0),  # on the boundaries: gates and threshold include them
        _track(12, 124.0),
        _track(13, 15.0),
    ]
    t = pd.DataFrame(rows)
    t.at[0, "X"] = np.where(np.arange(20) == 3, np.nan, 1.0)
    t.at[9, "Y"] = np.ones(19)
    return t


RULE_REASONS = {
    1: ("amplitudes", "NaN/inf in X"),
    2: ("catIdx", "catIdx 4 (not 1 or 2)"),
    3: ("min_lifetime", "lifetime 1.5 s <= 2 s"),
    4: ("hotspot", "hotspot"),
    5: ("short_gate", "lifetime 9 s at or below the short gate 14 s"),
    6: ("long_gate", "lifetime 130 s at or above the long gate 124 s"),
    7: ("lifetime_threshold", "lifetime 14.5 s <= 15 s (not in the hard set)"),
    10: ("amplitudes", "lengths differ (X 20, Y 19, pval_Ar_Y 20)"),
    11: ("short_gate", "lifetime 14 s at or below the short gate 14 s"),
    12: ("long_gate", "lifetime 124 s at or above the long gate 124 s"),
    13: ("lifetime_threshold", "lifetime 15 s <= 15 s (not in the hard set)"),
}


def test_every_drop_rule_has_its_reason():
    t = _rule_tracks()
    with pytest.warns(UserWarning, match="new.parquet: dropped 2 track"):
        p = prepare_tracks(t, gates=(14.0, 124.0), lifetime_threshold=15.0, source="new.parquet")
    got = {r.track_id: (r.rule, r.reason) for r in p.dropped.itertuples()}
    assert got == RULE_REASONS
    assert set(p.dropped["rule"]) == set(DROP_RULES)
    # One row per dropped track, in input order, and every track either kept or dropped.
    assert p.dropped["track_id"].tolist() == sorted(RULE_REASONS)
    assert list(p.dropped.columns) == ["cell", "track_id", "rule", "reason"]
    assert (p.dropped["cell"] == "new1").all()
    assert p.table["track_id"].tolist() == [8, 9]
    assert len(p.table) + len(p.dropped) == len(t)
    assert p.auxilin and p.table["y_consec_thresh"].tolist() == [True, False]
    # Without gates the gated tracks meet the next rule instead.
    with pytest.warns(UserWarning):
        q = prepare_tracks(t, gates=None, lifetime_threshold=15.0, source="new.parquet")
    reasons = dict(zip(q.dropped["track_id"], q.dropped["reason"], strict=True))
    assert reasons[5] == "lifetime 9 s <= 15 s (not in the hard set)" and 6 not in reasons
    assert q.table["track_id"].tolist() == [6, 8, 9, 12]


def test_all_dropped_gives_an_empty_table():
    t = pd.DataFrame([_track(1, 5.0), _track(2, 3.0, cat=3)])
    p = prepare_tracks(t, gates=None, lifetime_threshold=15.0, source="s")
    assert len(p.table) == 0 and "X_same_length_normalized" in p.table.columns
    assert p.dropped["rule"].tolist() == ["lifetime_threshold", "catIdx"]


@pytest.mark.parametrize("apply_gates", [True, False])
def test_prepare_reproduces_the_built_dataset(sim_tracks, tmp_path, apply_gates):
    ds = build_dataset(sim_tracks, test_cells=["cell5"], apply_gates=apply_gates)
    write_dataset(ds, tmp_path)
    rules = preparation_rules(tmp_path)
    assert (rules["gates"] is None) == (not apply_gates)
    if apply_gates:
        assert rules["gates"] == (ds.meta["thresh_short"], ds.meta["thresh_long"])
    written = read_dataset(tmp_path)
    for cell in ("cell2", "cell5"):  # a training and a test cell, each prepared alone
        p = prepare_tracks(sim_tracks[sim_tracks["cell"] == cell], **rules, source=cell)
        built = ds.table[ds.table["cell"] == cell].reset_index(drop=True)
        assert len(p.table) > 20
        assert_frame_equal(p.table, built[list(p.table.columns)], check_exact=True)
        assert set(built.columns) - set(p.table.columns) == {"split", "short", "long"}
        on_disk = written[written["cell"] == cell].reset_index(drop=True)
        for col in ("track_id", "X_same_length_normalized", "Y_sig_mean_normalized"):
            assert_series_equal(p.table[col], on_disk[col], check_exact=True)
        own = ds.dropped[ds.dropped["cell"] == cell].reset_index(drop=True)
        assert_frame_equal(p.dropped, own)
    counts = ds.dropped["rule"].value_counts()
    assert ds.meta["n_dropped"] == {r: int(counts.get(r, 0)) for r in DROP_RULES}
    assert len(ds.table) + len(ds.dropped) == len(sim_tracks)


def test_zscore_set_is_the_cells_kept_tracks():
    # Adding a dropped track to a cell changes nothing; adding a kept one changes all.
    t = pd.DataFrame([_track(1, 30.0, n=50), _track(2, 40.0, n=30)])
    base = prepare_tracks(t, gates=None, lifetime_threshold=15.0).table
    short = pd.concat([t, pd.DataFrame([_track(3, 10.0, n=10)])], ignore_index=True)
    same = prepare_tracks(short, gates=None, lifetime_threshold=15.0).table
    assert_series_equal(same["X_same_length_normalized"], base["X_same_length_normalized"])
    more = pd.concat([t, pd.DataFrame([_track(3, 20.0, n=10)])], ignore_index=True)
    other = prepare_tracks(more, gates=None, lifetime_threshold=15.0).table
    assert not np.allclose(
        other["X_same_length_normalized"].iloc[0], base["X_same_length_normalized"].iloc[0]
    )
    block = np.stack(other["X_same_length_normalized"])
    assert block.mean() == pytest.approx(0.0, abs=1e-12)
    assert block.std() == pytest.approx(1.0)


def test_prepare_errors_name_the_source():
    t = _rule_tracks()
    kw = {"gates": None, "lifetime_threshold": 15.0, "source": "cellX.mat"}
    with pytest.raises(ValueError, match=r"cellX\.mat: missing required columns \['X'\]"):
        prepare_tracks(t.drop(columns=["X"]), **kw)
    with pytest.raises(ValueError, match=r"cellX\.mat: 2 track\(s\) .*track 1: NaN/inf in X"):
        prepare_tracks(t, **kw, invalid="raise")
    with pytest.raises(ValueError, match=r"cellX\.mat: every track has missing"):
        prepare_tracks(t.assign(X=[np.full(20, np.nan)] * len(t)), **kw)
    with pytest.raises(ValueError, match=r"cellX\.mat: auxilin column 'Y' without 'pval_Ar_Y'"):
        prepare_tracks(t.drop(columns=["pval_Ar_Y"]), **kw)
    with pytest.raises(ValueError, match=r"cellX\.mat: 2 tracks share .*cell 'new1' track 3"):
        prepare_tracks(t.assign(track_id=[*range(1, 13), 3]), **kw)
    with pytest.raises(ValueError, match=r"cellX\.mat: no tracks"):
        prepare_tracks(t.iloc[:0], **kw)
    with pytest.raises(ValueError, match=r"cellX\.mat: gates must be two"):
        prepare_tracks(t.iloc[1:9], **{**kw, "gates": (14.0,)})


def test_clathrin_only_tracks_and_numbered_ids():
    t = _rule_tracks().iloc[1:9].drop(columns=["Y", "pval_Ar_Y", "track_id"])
    with pytest.warns(UserWarning, match="no auxilin channel"):
        p = prepare_tracks(t, gates=(14.0, 124.0), lifetime_threshold=15.0)
    assert not p.auxilin
    assert not {"Y_sig_mean_normalized", "y_consec_thresh", "hotspots"} & set(p.table.columns)
    # Ids are numbered from 1 in input order; the hotspot (id 3 here) cannot be seen.
    assert dict(zip(p.dropped["track_id"], p.dropped["rule"], strict=True))[3] == "short_gate"
    assert p.table["track_id"].tolist() == [7, 8]


def test_preparation_rules_from_meta(tmp_path):
    meta = {
        "apply_gates": False,
        "thresh_short": 14.0,
        "thresh_long": 124.0,
        "lifetime_threshold": 10.0,
        "length": 32,
    }
    assert preparation_rules(meta) == {"gates": None, "lifetime_threshold": 10.0, "length": 32}
    with pytest.raises(ValueError, match=r"no \['apply_gates'\].*rebuild"):
        preparation_rules({k: v for k, v in meta.items() if k != "apply_gates"})
    with pytest.raises(ValueError, match="cannot read"):
        preparation_rules(tmp_path)


def test_validation_cells_are_training_cells():
    t = pd.DataFrame({"cell": list("abcde"), "split": ["train"] * 4 + ["test"]})
    for seed in range(5):
        val = validation_cells(t, 2, seed)
        assert len(val) == 2 and "e" not in val and val == validation_cells(t, 2, seed)
    assert len(validation_cells(t, 10, 0)) == 3  # at least one training cell stays
    assert validation_cells(t.iloc[[0, 4]], 1, 0) == []
