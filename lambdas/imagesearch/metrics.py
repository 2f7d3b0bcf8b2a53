"""One-off CloudWatch metrics (embedded metric format) outside a handler's own
``Metrics`` flush: a line on stdout that CloudWatch turns into a data point."""

from __future__ import annotations

from imagesearch.resources import EMBEDDED_METRIC_DIMENSIONS, METRICS_NAMESPACE


def count(name: str, value: float = 1, unit: str = "Count") -> None:
    """Emit one data point of ``name`` now, with ``EMBEDDED_METRIC_DIMENSIONS``."""
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    with single_metric(
        name=name, unit=MetricUnit(unit), value=value, namespace=METRICS_NAMESPACE
    ) as metric:
        for key, text in EMBEDDED_METRIC_DIMENSIONS.items():
            metric.add_dimension(name=key, value=text)
