"""Public datasets rayrec reads: fetched once at set-up, checked by sha256, cached.

``rayrec data fetch obd`` (or ``make data``) fetches the Open Bandit Dataset sample; the cache
lives under ``$RAYREC_DATA`` (default ``~/.cache/rayrec``).
"""

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

__all__ = [
    "CAMPAIGNS",
    "DataError",
    "OBDLog",
    "bts_prior",
    "fetch_obd",
    "load_obd",
    "obd_dir",
    "verify_obd",
]
