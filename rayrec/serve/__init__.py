"""Serving trained policies over HTTP with Ray Serve, with propensities and an impression log.

Import :mod:`rayrec.serve.app` for the Serve application (it imports Ray Serve); the rest of this
package needs neither Ray nor a web framework except :mod:`rayrec.serve.api` (FastAPI).
"""

from rayrec.data.served import Feedback, Impressions, read_served
from rayrec.serve.policy import ServedPolicy, choose_slate
from rayrec.serve.service import RecommenderService, ServiceSettings

__all__ = [
    "Feedback",
    "Impressions",
    "RecommenderService",
    "ServedPolicy",
    "ServiceSettings",
    "choose_slate",
    "read_served",
]
