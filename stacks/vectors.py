"""Vector store component of the scale tier (``vectorStore=s3vectors``): an S3 Vectors
bucket (SSE-S3) and one index (float32, cosine) named after the model and dimension,
so a model change creates a new index (an index's dimension and metric are fixed) that
``imagesearch reindex`` fills from the catalog without model calls."""

from __future__ import annotations

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
        self.index = s3vectors.CfnIndex(
            self,
            "Index",
            vector_bucket_arn=self.bucket.attr_vector_bucket_arn,
            index_name=self.index_name,
            data_type="float32",
            dimension=config.embedding_dimension,
            distance_metric="cosine",
            metadata_configuration=s3vectors.CfnIndex.MetadataConfigurationProperty(
                non_filterable_metadata_keys=list(r.S3VECTORS_NON_FILTERABLE_KEYS)
            ),
        )
        self.index.apply_removal_policy(removal)

    @property
    def bucket_name(self) -> str:
        """The generated bucket name: the last part of its ARN (``.../bucket/NAME``)."""
        from aws_cdk import Fn

        return Fn.select(1, Fn.split("/", self.bucket.attr_vector_bucket_arn))

    @property
    def index_arn(self) -> str:
        return self.index.attr_index_arn
