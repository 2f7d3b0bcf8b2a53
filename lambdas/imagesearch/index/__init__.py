"""VectorIndex adapters. ``matrix``: the in-memory exact cosine index (numpy only);
``dynamodb``: the default catalog, DynamoDB table plus the in-memory index."""
