"""Public datasets fetched at set-up (never stored in the repository) and their loaders:
MovieLens-100k (next-item evaluation) and the Open Bandit Dataset sample (off-policy evaluation).
``rayrec data fetch NAME`` fetches any registered one (``make data`` fetches both)."""

from rayrec.datasets.ml100k import ML100k, fetch_ml100k, load_ml100k
from rayrec.datasets.obd import (
    CAMPAIGNS,
    DataError,
    OBDLog,
    bts_prior,
    fetch_obd,
    load_obd,
    obd_dir,
    verify_obd,
)
from rayrec.datasets.registry import FETCHERS, DatasetError, data_root, fetch

__all__ = [
    "CAMPAIGNS",
    "FETCHERS",
    "DataError",
    "DatasetError",
    "ML100k",
    "OBDLog",
    "bts_prior",
    "data_root",
    "fetch",
    "fetch_ml100k",
    "fetch_obd",
    "load_ml100k",
    "load_obd",
    "obd_dir",
    "verify_obd",
]
