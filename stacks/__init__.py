"""CDK infrastructure: one stack composing storage, ingest, search API and monitoring."""
