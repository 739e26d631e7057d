"""The Open Bandit Dataset (small sample), fetched from the ``obp`` 0.5.7 source distribution.

The Open Bandit Dataset was collected on the ZOZOTOWN fashion e-commerce platform by ZOZO, Inc.
and published by Saito, Aihara, Matsutani and Narita, "Open Bandit Dataset and Pipeline: Towards
Realistic and Reproducible Off-Policy Evaluation" (NeurIPS Datasets and Benchmarks, 2021), under
CC BY 4.0. The small sample ships inside the ``obp`` sdist on PyPI: 10,000 rounds per behaviour
policy (``random``, ``bts``) and campaign (``all``, ``men``, ``women``), three recommendation
slots, item context, and the Bernoulli Thompson Sampling priors used in production
(``obp/policy/conf/prior_bts.yaml``).

``fetch_obd`` runs ``pip download`` (PyPI only), extracts just those files, checks their sha256
against the constants below and renames a complete folder into the cache; the ``obp`` library is
never installed or imported. Readers check the sha256 of every file they open.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rayrec.datasets.registry import DatasetError, data_root, register

__all__ = [
    "BEHAVIORS",
    "CAMPAIGNS",
    "FILES",
    "SETUP_COMMAND",
    "DataError",
    "OBDLog",
    "bts_prior",
    "fetch_obd",
    "load_obd",
    "obd_dir",
    "verify_obd",
]

OBP_VERSION = "0.5.7"
CAMPAIGNS = ("all", "men", "women")
BEHAVIORS = ("random", "bts")
SETUP_COMMAND = "rayrec data fetch obd (or make data)"
PRIOR_FILE = "prior_bts.yaml"

FILES = {
    "bts/all/all.csv": "0ad874e4dbf6902f0845dd478ad8dde5ef6903583d3ffaace78411bdad064106",
    "bts/all/item_context.csv": "5d4359ba1cfa3ae88f0f1bae66bd633859fe6323817183632ee57b83539d9153",
    "bts/men/item_context.csv": "3b411ed6b0471316321a6b93f4f756bb25888eac6218cd71d0b603d41d85732d",
    "bts/men/men.csv": "db6d1f7ed2d591ba521533e45286d4c1fba7fe57a8ad2e80342210335f43c527",
    "bts/women/item_context.csv": "a56295bad066a558eb783055afd9279f5f4e209a4776eafc22151c53f0ac89d4",
    "bts/women/women.csv": "e5d1b49a39b608585a2f3014a3f54970430cd37a495c1b73fceb85cdf428a5b8",
    "random/all/all.csv": "7168295b6e0a9eabcf3392320a5dd434e542b68e705d5cd9491499af589812f1",
    "random/all/item_context.csv": "eba04cc23d5f130a93ff174c5392986882b94c3839433cb8143870eaa6221358",
    "random/men/item_context.csv": "6d855c2b7e917d0448d71bbe62c023147495882c0fdc8c41e86fef86abf9fe09",
    "random/men/men.csv": "ede6d08c6877f99cd3770f7d09e26c738e6aa6de4445ccccfb1356ba5d06b1eb",
    "random/women/item_context.csv": "b1ca4905f97703d196004f2ad4552c1e90c2afad8b50688d333b0d2dc0b33147",
    "random/women/women.csv": "e65f3bd3beb17664fa69cc129bf7bf852a775f8ffa630506e505fc905315bb34",
    PRIOR_FILE: "81a54fbdc184021ccc62ab97de81ec35461c032e3d7f99ccaa0a9745f732d251",
}
"""Cache-relative path -> sha256, computed once from obp-0.5.7.tar.gz."""


def _member(relative: str) -> str:
    """Where a cached file sits inside the sdist."""
    if relative == PRIOR_FILE:
        return f"obp-{OBP_VERSION}/obp/policy/conf/{PRIOR_FILE}"
    return f"obp-{OBP_VERSION}/obp/dataset/obd/{relative}"


class DataError(DatasetError, ValueError):
    """A dataset file is missing or corrupt; the message names it and the set-up command."""


def obd_dir(root: str | Path | None = None) -> Path:
    """The OBD cache folder: ``ROOT/obd`` with ROOT = ``$RAYREC_DATA`` or ``~/.cache/rayrec``."""
    return Path(data_root() if root is None else root) / "obd"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _checked(folder: Path, relative: str) -> Path:
    path = folder / relative
    if not path.is_file():
        raise DataError(f"{path}: missing; run: {SETUP_COMMAND}")
    if _sha256(path) != FILES[relative]:
        raise DataError(f"{path}: corrupt (sha256 mismatch); run: {SETUP_COMMAND}")
    return path


def verify_obd(root: str | Path | None = None) -> Path:
    """The cache folder if every file is present and intact, else :class:`DataError`."""
    folder = obd_dir(root)
    for relative in FILES:
        _checked(folder, relative)
    return folder


@register("obd")
def fetch_obd(
    root: str | Path | None = None, force: bool = False, sdist: str | Path | None = None
) -> Path:
    """Download (unless ``sdist`` is given), extract, verify and cache the OBD sample.

    ``fetch_obd(root, force)`` has the shape of a dataset registry's fetcher. Nothing is fetched
    when the cache is already complete and intact, unless ``force``. The files are written to a
    temporary folder next to the cache and renamed into place, so an interrupted fetch never
    leaves a half-written cache. Returns the cache folder.
    """
    folder = obd_dir(root)
    if not force:
        try:
            return verify_obd(root)
        except DataError:
            pass
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".obd-fetch-", dir=folder.parent) as tmp:
        tmp_path = Path(tmp)
        archive = Path(sdist) if sdist is not None else _download(tmp_path / "download")
        staged = tmp_path / "obd"
        _extract(archive, staged)
        for relative in FILES:
            if _sha256(staged / relative) != FILES[relative]:
                raise DataError(f"{archive}: {_member(relative)} has an unexpected sha256")
        old = folder.with_name(f".obd.old-{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(staged, folder)
        shutil.rmtree(old, ignore_errors=True)
    return folder


def _download(dest: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--no-binary",
        ":all:",
        "--ignore-requires-python",
        f"obp=={OBP_VERSION}",
        "-d",
        str(dest),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    archives = sorted(dest.glob(f"obp-{OBP_VERSION}.tar.gz")) if dest.is_dir() else []
    if done.returncode != 0 or not archives:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise DataError(f"pip download obp=={OBP_VERSION} failed: {last[0]}")
    return archives[0]


def _extract(archive: Path, out: Path) -> None:
    """Copy only the dataset CSVs and the BTS priors out of the sdist (no other member)."""
    wanted = {_member(relative): relative for relative in FILES}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                relative = wanted.get(member.name)
                if relative is None or not member.isfile():
                    continue
                data = tar.extractfile(member).read()
                target = out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{archive}: not a readable obp sdist ({e})") from e
    missing = [_member(r) for r in FILES if not (out / r).is_file()]
    if missing:
        raise DataError(f"{archive}: has no {missing[0]}")


def _check_campaign(campaign: str) -> None:
    if campaign not in CAMPAIGNS:
        raise DataError(f"unknown OBD campaign {campaign!r}; known: {', '.join(CAMPAIGNS)}")


@dataclass(frozen=True)
class OBDLog:
    """One behaviour policy's log of one campaign, slot level (one row per shown item)."""

    campaign: str
    """``all``, ``men`` or ``women``."""
    behavior: str
    """``random`` or ``bts``."""
    action: np.ndarray
    """(n,) item id shown."""
    position: np.ndarray
    """(n,) slot, 0-based (the dataset's 1, 2, 3 ranked densely, as OBP does)."""
    reward: np.ndarray
    """(n,) click (0/1)."""
    pscore: np.ndarray
    """(n,) behaviour probability of the item in the slot (``propensity_score``)."""
    user_features: np.ndarray
    """(n, 4) categorical user features as integer codes."""
    n_actions: int
    """Items of the campaign (rows of item_context.csv)."""
    len_list: int
    """Slots per impression (3)."""

    @property
    def n(self) -> int:
        return len(self.reward)


def load_obd(campaign: str, behavior: str = "random", root: str | Path | None = None) -> OBDLog:
    """Read one log from the cache (sha256 checked), rows sorted by timestamp as OBP does."""
    _check_campaign(campaign)
    if behavior not in BEHAVIORS:
        raise DataError(f"unknown OBD behaviour policy {behavior!r}; known: {', '.join(BEHAVIORS)}")
    folder = obd_dir(root)
    path = _checked(folder, f"{behavior}/{campaign}/{campaign}.csv")
    items = _checked(folder, f"{behavior}/{campaign}/item_context.csv")
    data = pd.read_csv(io.BytesIO(path.read_bytes()), index_col=0, engine="pyarrow")
    data = data.sort_values("timestamp", kind="stable")
    n_actions = len(pd.read_csv(items, index_col=0))
    positions = data["position"].to_numpy()
    _, dense = np.unique(positions, return_inverse=True)
    user_cols = [c for c in data.columns if c.startswith("user_feature_")]
    codes = np.stack([pd.factorize(data[c], sort=True)[0] for c in user_cols], axis=1)
    return OBDLog(
        campaign=campaign,
        behavior=behavior,
        action=data["item_id"].to_numpy(np.int64),
        position=dense.astype(np.int64),
        reward=data["click"].to_numpy(np.float64),
        pscore=data["propensity_score"].to_numpy(np.float64),
        user_features=codes.astype(np.int64),
        n_actions=n_actions,
        len_list=int(dense.max()) + 1,
    )


def bts_prior(campaign: str, root: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, beta), one per item: the ZOZOTOWN production priors of Bernoulli TS."""
    _check_campaign(campaign)
    path = _checked(obd_dir(root), PRIOR_FILE)
    prior = yaml.safe_load(path.read_text())[campaign]
    return np.asarray(prior["alpha"], dtype=np.float64), np.asarray(prior["beta"], dtype=np.float64)
