#!/usr/bin/env python3
"""CDK app: validated context -> ImageSearchStack, checked by cdk-nag (AwsSolutions)."""

from __future__ import annotations

import os
import sys

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from stacks.config import AppConfig, ConfigError
from stacks.stack import ImageSearchStack


def build_app(app: cdk.App | None = None) -> cdk.App:
    app = app or cdk.App()
    # The CDK CLI sets CDK_DEFAULT_REGION to the region it deploys an environment-agnostic
    # stack to: knowing it, synth refuses a model that region does not offer.
    config = AppConfig.from_context(
        app.node.try_get_context, region=os.environ.get("CDK_DEFAULT_REGION")
    )
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
