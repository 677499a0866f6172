"""ProcessedTracks.mat reading, field by field, in both MATLAB formats."""

import h5py
import numpy as np
import pytest
from scipy.io import savemat

from molecular_partner import read_processed_tracks

FIELDS = [
    "t",
    "f",
    "x",
    "y",
    "A",
    "c",
    "A_pstd",
    "pval_Ar",
    "sigma_r",
    "gapVect",
    "lifetime_s",
    "catIdx",
    "start",
    "end",
    "visibility",
    "startBuffer",
    "endBuffer",
]


def _tracks(rng):
    out = []
    for i, n in enumerate([4, 7]):
        out.append(
            {
                "t": np.arange(n, dtype=float)[None],
                "f": np.arange(1, n + 1, dtype=float)[None],
                "x": rng.random((2, n)),
                "y": rng.random((2, n)),
                "A": rng.random((2, n)) * 1000,
                "c": rng.random((2, n)),
                "A_pstd": rng.random((2, n)),
                "pval_Ar": rng.random((2, n)),
                "sigma_r": rng.random((2, n)),
                "gapVect": np.zeros((1, n)),
                "lifetime_s": float(n),
                "catIdx": float(i + 1),
                "start": 3.0,
                "end": 3.0 + n - 1,
                "visibility": 1.0,
                "startBuffer": {"A": rng.random((2, 5)), "pval_Ar": rng.random((2, 5))},
                "endBuffer": {"A": rng.random((2, 5)), "pval_Ar": rng.random((2, 5))},
            }
        )
    return out


def _write_v5(path, tracks, fields=FIELDS):
    arr = np.zeros((1, len(tracks)), dtype=[(f, object) for f in fields])
    for i, tr in enumerate(tracks):
        vals = []
        for f in fields:
            v = tr[f]
            if isinstance(v, dict):
                b = np.zeros((1, 1), dtype=[("A", object), ("pval_Ar", object)])
                b[0, 0] = (v["A"], v["pval_Ar"])
                v = b
            vals.append(v)
        arr[0, i] = tuple(vals)
    savemat(path, {"tracks": arr, "processingInfo": {"version": 1.0}})


def _check(df, tracks, cell):
    assert len(df) == len(tracks)
    for row, tr in zip(df.itertuples(index=False), tracks, strict=True):
        assert row.cell == cell
        assert row.lifetime_s == tr["lifetime_s"] and row.catIdx == int(tr["catIdx"])
        assert row.start == tr["start"] and row.end == tr["end"]
        np.testing.assert_allclose(row.X, tr["A"][0])
        np.testing.assert_allclose(row.Y, tr["A"][1])
        np.testing.assert_allclose(row.pval_Ar_Y, tr["pval_Ar"][1])
        np.testing.assert_allclose(row.pval_Ar_X, tr["pval_Ar"][0])
        np.testing.assert_allclose(row.c_Y, tr["c"][1])
        np.testing.assert_allclose(row.A_pstd_X, tr["A_pstd"][0])
        np.testing.assert_allclose(row.sigma_r_Y, tr["sigma_r"][1])
        np.testing.assert_allclose(row.t, tr["t"][0])
        np.testing.assert_allclose(row.f, tr["f"][0])
        np.testing.assert_allclose(row.x, tr["x"][0])
        np.testing.assert_allclose(row.y, tr["y"][0])
        np.testing.assert_allclose(row.X_startBuffer, tr["startBuffer"]["A"][0])
        np.testing.assert_allclose(row.Y_endBuffer, tr["endBuffer"]["A"][1])
        np.testing.assert_allclose(row.pval_Ar_Y_startBuffer, tr["startBuffer"]["pval_Ar"][1])


def test_v5_field_by_field(tmp_path):
    tracks = _tracks(np.random.default_rng(0))
    path = tmp_path / "Cell3_1s" / "TagRFP" / "Tracking" / "ProcessedTracks.mat"
    path.parent.mkdir(parents=True)
    _write_v5(path, tracks)
    _check(read_processed_tracks(path), tracks, "Cell3_1s")


def _write_v73(path, tracks):
    # MATLAB v7.3 layout: a struct array is a group whose fields hold object references;
    # arrays are stored transposed (column-major).
    with h5py.File(path, "w") as f:
        f.create_group("#refs#")
        g = f.create_group("tracks")
        g.attrs["MATLAB_class"] = np.bytes_("struct")
        k = 0
        for field in FIELDS:
            refs = []
            for tr in tracks:
                v = tr[field]
                name = f"#refs#/r{k}"
                k += 1
                if isinstance(v, dict):
                    sub = f.create_group(name)
                    for key, arr in v.items():
                        sub.create_dataset(key, data=np.asarray(arr).T)
                    refs.append(sub.ref)
                else:
                    refs.append(f.create_dataset(name, data=np.atleast_2d(v).T).ref)
            g.create_dataset(field, data=np.array(refs, dtype=h5py.ref_dtype)[:, None])


def test_v73_field_by_field(tmp_path):
    tracks = _tracks(np.random.default_rng(1))
    path = tmp_path / "ProcessedTracks.mat"
    _write_v73(path, tracks)
    _check(read_processed_tracks(path, cell="c9"), tracks, "c9")


def test_missing_required_field(tmp_path):
    tracks = _tracks(np.random.default_rng(2))
    path = tmp_path / "ProcessedTracks.mat"
    _write_v5(path, tracks, fields=[f for f in FIELDS if f != "pval_Ar"])
    with pytest.raises(ValueError, match=r"ProcessedTracks\.mat.*pval_Ar"):
        read_processed_tracks(path)


def test_not_a_mat_file(tmp_path):
    path = tmp_path / "ProcessedTracks.mat"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"ProcessedTracks\.mat"):
        read_processed_tracks(path)


def test_single_channel_is_refused(tmp_path):
    tracks = _tracks(np.random.default_rng(3))
    for tr in tracks:
        tr["A"] = tr["A"][:1]
    path = tmp_path / "ProcessedTracks.mat"
    _write_v5(path, tracks)
    with pytest.raises(ValueError, match="channel"):
        read_processed_tracks(path)
