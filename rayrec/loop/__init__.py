"""The closed loop: simulated users against a live endpoint, and A/B analysis of what they did.

``abtest`` is numpy and scipy only (no Ray, no HTTP); ``traffic`` drives rayrec's simulator
against ``POST /v1/recommend`` and ``POST /v1/feedback`` over HTTP; ``cli`` is ``rayrec traffic``.
"""
