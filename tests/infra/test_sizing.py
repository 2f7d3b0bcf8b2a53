"""The embedded tier's function memory (stacks/sizing.py) and the synth-time refusal of
an embeddedMaxImages that would not fit Lambda's maximum (no synth: plain config)."""

from __future__ import annotations

import re

import pytest

from imagesearch import resources as r
from stacks import sizing
from stacks.config import AppConfig, ConfigError
from stacks.maintenance import SCALE_TIER_MEMORY_MB, memory_mb

NOVA = r.NOVA_MODEL_ID


def test_maintenance_memory_adds_the_snapshot_write_to_the_loaded_index() -> None:
    config = AppConfig.from_context({"embeddedMaxImages": 1_000_000})
    search = sizing.embedded_memory_mb(1_000_000, 1024)
    assert memory_mb(config) == sizing.maintenance_memory_mb(1_000_000, 1024)
    assert search < memory_mb(config) <= sizing.LAMBDA_MAX_MEMORY_MB
    assert memory_mb(config) - search >= sizing.SNAPSHOT_WRITE_MB - 64  # rounded to 64 MB
    assert memory_mb(AppConfig.from_context({"embeddedMaxImages": 250_000})) == 2048  # floor
    scale = AppConfig.from_context({"vectorStore": "s3vectors"})
    assert memory_mb(scale) == SCALE_TIER_MEMORY_MB


def test_every_allowed_capacity_at_1024_dimensions_fits_lambda() -> None:
    assert sizing.max_images_that_fit(1024, 1024) >= r.EMBEDDED_MAX_IMAGES_LIMIT
    AppConfig.from_context({"embeddedMaxImages": r.EMBEDDED_MAX_IMAGES_LIMIT})  # no error


def test_a_capacity_whose_memory_exceeds_lambdas_maximum_is_refused() -> None:
    fits = sizing.max_images_that_fit(3072, 3072)
    assert 0 < fits < r.EMBEDDED_MAX_IMAGES_LIMIT
    assert sizing.needed_memory_mb(fits, 3072, 3072) <= sizing.LAMBDA_MAX_MEMORY_MB
    assert sizing.needed_memory_mb(fits + 1000, 3072, 3072) > sizing.LAMBDA_MAX_MEMORY_MB
    context = {"modelId": NOVA, "embeddingDimension": 3072, "embeddedMaxImages": fits + 1000}
    with pytest.raises(ConfigError, match=re.escape(f"at most {fits} fit")) as error:
        AppConfig.from_context(context)
    assert "above Lambda's 10240 MB" in str(error.value)
    assert "vectorStore=s3vectors" in str(error.value)
    AppConfig.from_context({**context, "embeddedMaxImages": fits})  # the largest that fits
    # The scale tier holds no matrix: any capacity is fine there
    AppConfig.from_context({**context, "vectorStore": "s3vectors"})


def test_during_a_model_switch_search_holds_both_matrices() -> None:
    context = {
        "modelId": NOVA,
        "embeddingDimension": 1024,
        "previousModelId": NOVA,
        "previousEmbeddingDimension": 3072,
        "embeddedMaxImages": 600_000,
    }
    # Alone, either model's index fits; both at once in a search instance do not
    assert sizing.max_images_that_fit(3072, 3072) > 600_000
    assert sizing.max_images_that_fit(3072, 4096) < 600_000
    with pytest.raises(ConfigError, match="during a model switch"):
        AppConfig.from_context(context)
    # Maintenance loads the previous (serving) model's index until the flip
    fitting = AppConfig.from_context({**context, "embeddedMaxImages": 300_000})
    assert memory_mb(fitting) == sizing.maintenance_memory_mb(300_000, 3072)
