#!/usr/bin/env python3
"""CDK app: validated context -> ImageSearchStack, checked by cdk-nag (AwsSolutions)."""

from __future__ import annotations

import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import AppConfig, ConfigError
from stacks.stack import ImageSearchStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    config = AppConfig.from_context(app.node.try_get_context)
    ImageSearchStack(app, config=config)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app


if __name__ == "__main__":
    try:
        app = build_app()
    except ConfigError as error:
        # A clear one-line message instead of a traceback for a bad `-c key=value`.
        sys.exit(f"Invalid CDK context: {error}")
    app.synth()
