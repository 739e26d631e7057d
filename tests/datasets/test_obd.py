"""The Open Bandit Dataset sample: fetch (through pip, as `make data` does), checks, reader."""

from __future__ import annotations

import csv
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from rayrec.datasets import DataError, bts_prior, fetch_obd, load_obd, obd_dir, verify_obd
from rayrec.datasets.obd import FILES, _member


@pytest.fixture(scope="module")
def cache() -> Path:
    """The real cache (``make data`` fills it; fetched here when it is not there yet)."""
    return fetch_obd()


@pytest.fixture()
def copy_root(cache, tmp_path) -> Path:
    shutil.copytree(cache, obd_dir(tmp_path))
    return tmp_path


def _sdist(cache: Path, out: Path, tamper: str | None = None) -> Path:
    """An obp sdist with the cached files at their original member names."""
    path = out / "obp-0.5.7.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for relative in FILES:
            data = (cache / relative).read_bytes()
            if relative == tamper:
                data += b"\n"
            info = tarfile.TarInfo(_member(relative))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_cache_is_complete_and_checked(cache):
    assert verify_obd() == cache
    assert sorted(str(p.relative_to(cache)) for p in cache.rglob("*") if p.is_file()) == sorted(
        FILES
    )


@pytest.mark.parametrize(("campaign", "items"), [("all", 80), ("men", 34), ("women", 46)])
def test_reader_matches_the_csv(cache, campaign, items):
    log = load_obd(campaign, "random")
    with (cache / f"random/{campaign}/{campaign}.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert log.n == len(rows) == 10_000
    assert log.n_actions == items
    assert log.len_list == 3
    assert set(np.unique(log.position)) == {0, 1, 2}
    assert log.reward.sum() == sum(int(r["click"]) for r in rows)
    np.testing.assert_allclose(log.pscore, 1.0 / items)  # the uniformly random logging policy
    alpha, beta = bts_prior(campaign)
    assert len(alpha) == len(beta) == items


def test_positions_are_the_dense_rank_of_the_slot(cache):
    log = load_obd("men", "bts")
    with (cache / "bts/men/men.csv").open() as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["timestamp"])
    assert [int(r["position"]) - 1 for r in rows[:50]] == log.position[:50].tolist()
    assert [int(r["item_id"]) for r in rows[:50]] == log.action[:50].tolist()


def test_corrupt_file_is_named_with_the_setup_command(copy_root):
    path = obd_dir(copy_root) / "random/men/men.csv"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"random/men/men\.csv: corrupt .* rayrec data fetch obd"):
        load_obd("men", root=copy_root)
    load_obd("women", root=copy_root)  # the other files are still fine


def test_missing_file_is_named(copy_root):
    (obd_dir(copy_root) / "prior_bts.yaml").unlink()
    with pytest.raises(DataError, match=r"prior_bts\.yaml: missing; run: rayrec data fetch obd"):
        bts_prior("all", root=copy_root)


def test_fetch_from_sdist_is_atomic_and_idempotent(cache, tmp_path):
    root = tmp_path / "root"
    folder = fetch_obd(root, sdist=_sdist(cache, tmp_path))
    assert folder == obd_dir(root) and verify_obd(root) == folder
    assert [p.name for p in root.iterdir()] == ["obd"]  # no temporary folder left behind
    stamp = (folder / "prior_bts.yaml").stat().st_mtime_ns
    fetch_obd(root, sdist=tmp_path / "does-not-exist.tar.gz")  # complete cache: nothing fetched
    assert (folder / "prior_bts.yaml").stat().st_mtime_ns == stamp


def test_fetch_refuses_a_tampered_sdist(cache, tmp_path):
    root = tmp_path / "root"
    bad = _sdist(cache, tmp_path, tamper="bts/all/all.csv")
    with pytest.raises(DataError, match=r"bts/all/all\.csv has an unexpected sha256"):
        fetch_obd(root, sdist=bad)
    assert not obd_dir(root).exists()


def test_unknown_campaign_and_behaviour(cache):
    with pytest.raises(DataError, match="unknown OBD campaign 'kids'; known: all, men, women"):
        load_obd("kids")
    with pytest.raises(DataError, match="unknown OBD behaviour policy 'egreedy'"):
        load_obd("all", "egreedy")
