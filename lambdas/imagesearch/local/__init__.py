"""Local mode: the whole product on one machine (SPEC section 8).

``run(port, dropbox, embedder)`` is ``imagesearch local``; ``LocalMode`` is the
same as an object with ``start()``/``stop()`` for tests and benchmarks.
"""

from __future__ import annotations

from imagesearch.local.app import EMBEDDERS, LocalMode, run
from imagesearch.local.moto_env import (
    AwsClients,
    LocalModeError,
    LocalNames,
    LocalResources,
    create_resources,
)

__all__ = [
    "EMBEDDERS",
    "AwsClients",
    "LocalMode",
    "LocalModeError",
    "LocalNames",
    "LocalResources",
    "create_resources",
    "run",
]
