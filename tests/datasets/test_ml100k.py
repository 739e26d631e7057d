"""ML-100k fetch and loader: counts, checksums, atomic caching, one-line errors (no network)."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from rayrec.cli import main
from rayrec.datasets import DatasetError, data_root, fetch, fetch_ml100k, load_ml100k
from rayrec.datasets.ml100k import FILES, NAME


@pytest.fixture(scope="module")
def cached() -> Path:
    """The fetched ML-100k folder (``make data`` fetches it before ``make test``)."""
    folder = data_root() / NAME
    if not all((folder / name).is_file() for name in FILES):
        pytest.fail(f"ML-100k is not fetched into {folder}; run: make data")
    return folder


def _wheel(path: Path, source: Path, truncate: str | None = None) -> Path:
    """A stand-in recbole wheel holding ``source``'s files (one of them truncated if asked)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name in FILES:
            data = (source / name).read_bytes()
            if name == truncate:
                data = data[: len(data) // 2]
            archive.writestr(f"recbole/dataset_example/ml-100k/{name}", data)
    return path


def test_counts(cached: Path) -> None:
    data = load_ml100k(cached.parent)
    assert len(data.inter) == 100_000
    assert data.inter["user_id"].nunique() == 943
    assert data.inter["item_id"].nunique() == 1682
    assert list(data.inter.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert (len(data.item), len(data.user)) == (1682, 943)
    assert set(data.inter["rating"].unique()) == {1, 2, 3, 4, 5}


def test_fetch_from_wheel_is_atomic_and_checked(cached: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    folder = fetch_ml100k(root, wheel=_wheel(tmp_path / "r.whl", cached))
    assert folder == root / NAME
    assert sorted(p.name for p in root.iterdir()) == [NAME]  # no temporary folder left behind
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILES)
    assert len(load_ml100k(root).inter) == 100_000


def test_fetch_rejects_a_corrupt_wheel_and_caches_nothing(cached: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    wheel = _wheel(tmp_path / "r.whl", cached, truncate="ml-100k.inter")
    with pytest.raises(DatasetError, match=r"ml-100k\.inter .*unexpected sha256"):
        fetch_ml100k(root, wheel=wheel)
    assert list(root.iterdir()) == []


def test_fetch_replaces_a_corrupt_cache(cached: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    shutil.copytree(cached, root / NAME)
    (root / NAME / "ml-100k.user").write_text("user_id:token\n1\n")
    fetch_ml100k(root, wheel=_wheel(tmp_path / "r.whl", cached))
    assert len(load_ml100k(root).user) == 943
    assert sorted(p.name for p in root.iterdir()) == [NAME]


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_bad_file_is_one_line_naming_file_and_setup(
    cached: Path, tmp_path: Path, damage: str
) -> None:
    shutil.copytree(cached, tmp_path / NAME)
    path = tmp_path / NAME / "ml-100k.inter"
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetError) as info:
        load_ml100k(tmp_path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "make data" in message if damage == "missing" else "--force" in message


def test_data_fetch_cli_keeps_a_valid_cache(
    cached: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copytree(cached, tmp_path / NAME)
    assert main(["data", "fetch", "ml-100k", "--root", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"ml-100k: {tmp_path / NAME}"


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"dataset \('nope'\) must be one of .*ml-100k"):
        fetch("nope")
