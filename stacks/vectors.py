"""Vector store component of the scale tier (``vectorStore=s3vectors``): an S3 Vectors
bucket (SSE-S3) and one index (float32, cosine) named after the model and dimension,
so a model change creates a new index (an index's dimension and metric are fixed).
During a model switch (``previousModelId``) the previous model's index stays beside
the new one. Each index's construct id is derived from its name, so an index keeps its
logical id whatever else is deployed with it: a switch adds one, the next deploy
removes the other, and CloudFormation never replaces (recreates) either."""

from __future__ import annotations

import hashlib

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3vectors as s3vectors
from constructs import Construct

from imagesearch import resources as r
from stacks.config import AppConfig


class VectorStore(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig) -> None:
        super().__init__(scope, construct_id)
        removal = RemovalPolicy.RETAIN if config.retain_data else RemovalPolicy.DESTROY
        self.bucket = s3vectors.CfnVectorBucket(
            self,
            "VectorBucket",
            encryption_configuration=s3vectors.CfnVectorBucket.EncryptionConfigurationProperty(
                sse_type="AES256"
            ),
        )
        self.bucket.apply_removal_policy(removal)
        self.index_name = r.vector_index_name(config.model_id, config.embedding_dimension)
        self.index = self._index(self.index_name, config.embedding_dimension, removal)
        # During a model switch: the index search serves from until the flip.
        self.previous_index: s3vectors.CfnIndex | None = None
        self.previous_index_name: str | None = None
        previous = config.previous_space
        if previous is not None:
            self.previous_index_name = r.vector_index_name(*previous)
            self.previous_index = self._index(self.previous_index_name, previous[1], removal)

    def _index(self, name: str, dimension: int, removal: RemovalPolicy) -> s3vectors.CfnIndex:
        index = s3vectors.CfnIndex(
            self,
            "Index" + hashlib.sha256(name.encode()).hexdigest()[:8],
            vector_bucket_arn=self.bucket.attr_vector_bucket_arn,
            index_name=name,
            data_type="float32",
            dimension=dimension,
            distance_metric="cosine",
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=list(r.S3VECTORS_NON_FILTERABLE_KEYS)
            ),
        )
        index.apply_removal_policy(removal)
        return index

    @property
    def bucket_name(self) -> str:
        """The generated bucket name: the last part of its ARN (``.../bucket/NAME``)."""
        from aws_cdk import Fn

        return Fn.select(1, Fn.split("/", self.bucket.attr_vector_bucket_arn))

    @property
    def index_arn(self) -> str:
        return self.index.attr_index_arn

    @property
    def index_arns(self) -> list[str]:
        """The deployed model's index and, during a switch, the previous one's."""
        extra = [self.previous_index.attr_index_arn] if self.previous_index is not None else []
        return [self.index.attr_index_arn, *extra]
