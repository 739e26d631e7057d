"""MovieLens-100k (GroupLens; Harper & Konstan 2015), as RecBole 1.2.1 ships it in its wheel.

The licence of MovieLens forbids redistribution, so the repository never contains the data: set-up
downloads the ``recbole==1.2.1`` wheel from PyPI with pip (no install), extracts only the three
atomic files ``ml-100k.{inter,item,user}``, checks their sha256 and caches them under
``$RAYREC_DATA/ml-100k`` (default ``~/.cache/rayrec/ml-100k``). Reading checks the checksums again,
so a truncated or edited file fails with one line instead of silently changing every number.
"""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from rayrec.datasets.registry import DatasetError, data_root, register

__all__ = [
    "FILES",
    "NAME",
    "SETUP_COMMAND",
    "WHEEL_REQUIREMENT",
    "ML100k",
    "check_files",
    "fetch_ml100k",
    "load_ml100k",
]

NAME = "ml-100k"
WHEEL_REQUIREMENT = "recbole==1.2.1"
SETUP_COMMAND = "make data (or: rayrec data fetch ml-100k)"
_MEMBER_DIR = "recbole/dataset_example/ml-100k"

# sha256 of the files inside recbole-1.2.1-py3-none-any.whl, computed once from that wheel.
FILES: dict[str, str] = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
}


@dataclass(frozen=True)
class ML100k:
    """The three atomic files as data frames (column names without RecBole's ``:type`` suffix)."""

    inter: pd.DataFrame
    """user_id, item_id, rating, timestamp; one row per rating, in the file's order."""
    item: pd.DataFrame
    """item_id, movie_title, release_year, class (space-separated genres)."""
    user: pd.DataFrame
    """user_id, age, gender, occupation, zip_code."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_files(folder: Path) -> None:
    """Raise ``DatasetError`` naming the first missing or corrupt file in ``folder``."""
    for name, expected in FILES.items():
        path = folder / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing; set it up with: {SETUP_COMMAND}")
        if _sha256(path) != expected:
            raise DatasetError(
                f"{path} is corrupt (sha256 mismatch); fetch it again with: "
                f"rayrec data fetch {NAME} --force"
            )


def _download_wheel(into: Path) -> Path:
    """``pip download --no-deps recbole==1.2.1`` into ``into``; the wheel's path."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
    command += ["--only-binary", ":all:", WHEEL_REQUIREMENT, "-d", str(into)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("recbole-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise DatasetError(f"pip download {WHEEL_REQUIREMENT} failed: {last}")
    return wheels[0]


@register(NAME)
def fetch_ml100k(root: Path | None = None, force: bool = False, wheel: Path | None = None) -> Path:
    """Fetch ML-100k into ``root/ml-100k`` (default ``data_root()``) and return that folder.

    A valid cache is kept unless ``force``. ``wheel`` extracts from a local recbole wheel instead of
    downloading one. The files land in a temporary folder next to the target and are renamed into
    place only after every checksum matched.
    """
    root = data_root() if root is None else Path(root)
    target = root / NAME
    if not force:
        try:
            check_files(target)
            return target
        except DatasetError:
            pass
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".{NAME}-") as tmp:
        staging = Path(tmp) / NAME
        staging.mkdir()
        source = wheel if wheel is not None else _download_wheel(Path(tmp))
        try:
            with zipfile.ZipFile(source) as archive:
                for name in FILES:
                    with archive.open(f"{_MEMBER_DIR}/{name}") as src:
                        with (staging / name).open("wb") as dst:
                            shutil.copyfileobj(src, dst)
        except (KeyError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{source} is not a recbole 1.2.1 wheel with {NAME}: {e}") from None
        for name, expected in FILES.items():
            if _sha256(staging / name) != expected:
                raise DatasetError(f"{name} in {source} has an unexpected sha256; not cached")
        old = Path(tmp) / "old"
        if target.exists():
            target.rename(old)  # removed with the temporary folder
        staging.rename(target)
    return target


def _read(path: Path, dtype: dict[str, str] | None = None) -> pd.DataFrame:
    frame = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=dtype)
    return frame.rename(columns=lambda c: c.split(":")[0])


def load_ml100k(root: Path | None = None) -> ML100k:
    """Read the cached files (checksums first); ``DatasetError`` if one is missing or corrupt."""
    folder = (data_root() if root is None else Path(root)) / NAME
    check_files(folder)
    inter = _read(folder / "ml-100k.inter")
    inter = inter.astype({"user_id": "int64", "item_id": "int64", "timestamp": "int64"})
    item = _read(folder / "ml-100k.item", dtype={"movie_title": str, "class": str})
    user = _read(folder / "ml-100k.user", dtype={"zip_code": str, "gender": str})
    return ML100k(inter=inter, item=item, user=user)
