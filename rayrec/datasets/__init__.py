"""Public datasets fetched at set-up (never stored in the repository) and their loaders."""

from rayrec.datasets.ml100k import ML100k, fetch_ml100k, load_ml100k
from rayrec.datasets.registry import FETCHERS, DatasetError, data_root, fetch

__all__ = [
    "FETCHERS",
    "DatasetError",
    "ML100k",
    "data_root",
    "fetch",
    "fetch_ml100k",
    "load_ml100k",
]
