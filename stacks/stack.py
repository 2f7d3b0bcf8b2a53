"""The image search stack: composes one construct per component and wires them together.

Every cross-component permission is granted here with an explicit ``PolicyStatement``
(exact actions on exact ARNs) so the synthesized template reads as the access policy.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import ArnFormat, Aws, CfnOutput, CfnRule, CfnRuleAssertion, Fn, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from cdk_nag import NagPackSuppression, NagSuppressions
from constructs import Construct

from imagesearch import resources as r
from stacks.bundling import lambda_code
from stacks.config import AppConfig
from stacks.ingest import Ingest
from stacks.maintenance import IndexMaintenance
from stacks.monitoring import Monitoring
from stacks.search_api import SearchApi
from stacks.storage import Storage
from stacks.vectors import VectorStore

# Construct id of CDK's singleton handler for Custom::S3BucketNotifications.
NOTIFICATIONS_HANDLER_ID = "BucketNotificationsHandler050a0587b7544547bf325f094a3db834"


class ImageSearchStack(Stack):
    """S3 drop folder -> SQS -> ingest Lambda -> DynamoDB; REST API -> search Lambda."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str = r.DEFAULT_STACK_NAME,
        *,
        config: AppConfig,
        code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault(
            "description", "Serverless multimodal image search (S3 + Bedrock + DynamoDB + API)"
        )
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        code = code or lambda_code()

        self.storage = Storage(self, "Storage", config=config)
        bucket, table = self.storage.bucket, self.storage.table
        self.ingest = Ingest(self, "Ingest", config=config, code=code, bucket=bucket, table=table)
        self.search = SearchApi(
            self, "SearchApi", config=config, code=code, bucket=bucket, table=table
        )
        # The scale tier's vector index (vectorStore=s3vectors); None for the embedded tier.
        self.vectors: VectorStore | None = None
        if config.vector_store == "s3vectors":
            self.vectors = VectorStore(self, "Vectors", config=config)
            for function in (self.ingest.function, self.search.function):
                function.add_environment(r.ENV_VECTOR_BUCKET, self.vectors.bucket_name)
                function.add_environment(r.ENV_VECTOR_INDEX, self.vectors.index_name)
        # The embedded tier's snapshots, GET /health's count (decision 39) and on every
        # tier the model switch: driving one (previousModelId), or healing one a deploy
        # without it abandoned (decision 42).
        self.maintenance: IndexMaintenance | None = IndexMaintenance(
            self, "IndexMaintenance", config=config, code=code, bucket=bucket, table=table
        )
        if self.vectors is not None:
            self.maintenance.function.add_environment(r.ENV_VECTOR_BUCKET, self.vectors.bucket_name)
            self.maintenance.function.add_environment(r.ENV_VECTOR_INDEX, self.vectors.index_name)
        if self.maintenance is not None:
            self.maintenance.function.add_environment(
                r.ENV_INGEST_QUEUE_URL, self.ingest.queue.queue_url
            )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            queue=self.ingest.queue,
            dead_letter_queue=self.ingest.dead_letter_queue,
            ingest_function=self.ingest.function,
            ingest_service_name=self.ingest.service_name,
            search_function=self.search.function,
            api=self.search.api,
            embedded_max_images=(
                config.embedded_max_images if config.vector_store == "dynamodb" else None
            ),
            maintenance_function=(
                self.maintenance.function if self.maintenance is not None else None
            ),
        )

        self._grant_ingest()
        self._grant_search()
        self._model_region_rule()
        self._vector_store_region_rule()
        self._grant_maintenance()
        self._outputs()
        self._suppress_nag_findings()

    # --- ARNs -------------------------------------------------------------------

    @property
    def model_arn(self) -> str:
        """Foundation model ARN in the stack's region: no account field."""
        return self._foundation_model_arn(r.split_model_id(self.config.model_id)[1])

    def _foundation_model_arn(self, model_id: str, region: str | None = None) -> str:
        return self.format_arn(
            service="bedrock",
            account="",
            region=region,
            resource="foundation-model",
            resource_name=model_id,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )

    def model_arns(self, model_id: str) -> list[str]:
        """Every ARN InvokeModel on ``model_id`` is authorised against, and no other.

        A foundation model id: that model in this region. A cross-region inference
        profile (``resources.INFERENCE_PROFILES``): the profile in this region and account,
        the foundation model in this region (the source region, which also covers a region
        added with ``modelRegions``) and in every region the profile may route to: the
        listed regions, ``*`` for that one model where AWS publishes no list, or the empty
        region field IAM uses for "any commercial region" (``global.``).
        """
        geo, base = r.split_model_id(model_id)
        if geo is None:
            return [self._foundation_model_arn(base)]
        profile = self.format_arn(
            service="bedrock",
            resource="inference-profile",
            resource_name=model_id,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
        )
        destinations = r.INFERENCE_PROFILES[model_id].destinations
        arns = [profile, self._foundation_model_arn(base)]
        arns += [self._foundation_model_arn(base, region) for region in destinations]
        return list(dict.fromkeys(arns))

    def _uploads_arn(self) -> str:
        return self.storage.bucket.arn_for_objects(f"{self.config.upload_prefix}*")

    def _thumbnails_arn(self) -> str:
        return self.storage.bucket.arn_for_objects(f"{r.THUMBNAIL_PREFIX}*")

    # --- grants -----------------------------------------------------------------

    def _grant_ingest(self) -> None:
        grant = self.ingest.handler.add_to_role_policy
        grant(
            iam.PolicyStatement(
                sid="ReadUploads",
                actions=["s3:GetObject"],
                resources=[self._uploads_arn()],
            )
        )
        # Without ListBucket, S3 answers 403 AccessDenied (not 404 NoSuchKey) for a key
        # that no longer exists, and a deleted-then-notified object would look like a
        # permissions problem instead of an ordinary race. Listing is limited to the
        # upload prefix; where S3 still answers 403, the object store asks a listing of
        # the key itself (decisions.md, entry 3).
        grant(
            iam.PolicyStatement(
                sid="ListUploadsFor404",
                actions=["s3:ListBucket"],
                resources=[self.storage.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{self.config.upload_prefix}*"]}},
            )
        )
        # HeadObject (authorized by s3:GetObject): a retried message re-creates a thumbnail
        # only when it is missing.
        grant(
            iam.PolicyStatement(
                sid="CheckThumbnails",
                actions=["s3:GetObject"],
                resources=[self._thumbnails_arn()],
            )
        )
        grant(
            iam.PolicyStatement(
                sid="WriteThumbnails",
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[self._thumbnails_arn()],
            )
        )
        grant(self._invoke_model_statement())
        grant(
            iam.PolicyStatement(
                sid="ReadWriteImageRecords",
                actions=["dynamodb:GetItem", "dynamodb:PutItem"],
                resources=[self.storage.table.table_arn],
            )
        )
        if self.vectors is not None:
            # The index follows the catalog by read-after-write on the catalog
            # (index/sync.py: a batch's records in one BatchGetItem): ingest never reads
            # the vector index.
            grant(
                iam.PolicyStatement(
                    sid="ReadRecordsForVectorSync",
                    actions=["dynamodb:BatchGetItem"],
                    resources=[self.storage.table.table_arn],
                )
            )
            grant(
                iam.PolicyStatement(
                    sid="WriteVectorIndex",
                    actions=["s3vectors:PutVectors", "s3vectors:DeleteVectors"],
                    resources=self.vectors.index_arns,
                )
            )

    def _grant_search(self) -> None:
        grant = self.search.handler.add_to_role_policy
        table_arn = self.storage.table.table_arn
        grant(
            iam.PolicyStatement(
                sid="ReadImageRecords",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:BatchGetItem",
                    "dynamodb:Query",
                    "dynamodb:Scan",
                ],
                resources=[table_arn, f"{table_arn}/index/*"],
            )
        )
        # Presigned GETs are signed with the function's credentials.
        grant(
            iam.PolicyStatement(
                sid="PresignImageUrls",
                actions=["s3:GetObject"],
                resources=[self._uploads_arn(), self._thumbnails_arn()],
            )
        )
        # Presigned PUT (POST /uploads) and DELETE /images/{image_id}.
        grant(
            iam.PolicyStatement(
                sid="UploadAndDeleteImages",
                actions=["s3:PutObject", "s3:DeleteObject"],
                resources=[self._uploads_arn()],
            )
        )
        # DELETE /images/{image_id} marks the record deleted at once (a conditional
        # PutItem of the tombstone: the table only, no index) and deletes the thumbnail.
        grant(
            iam.PolicyStatement(
                sid="TombstoneDeletedImages",
                actions=["dynamodb:PutItem"],
                resources=[table_arn],
            )
        )
        grant(
            iam.PolicyStatement(
                sid="DeleteThumbnails",
                actions=["s3:DeleteObject"],
                resources=[self._thumbnails_arn()],
            )
        )
        grant(self._invoke_model_statement())
        if self.vectors is not None:
            # GetVectors: "more like this" reads a stored vector, and S3 Vectors requires
            # it for queries with a filter or returned metadata. DeleteVectors: a DELETE
            # removes the image's vector at once.
            grant(
                iam.PolicyStatement(
                    sid="QueryVectorIndex",
                    actions=[
                        "s3vectors:QueryVectors",
                        "s3vectors:GetVectors",
                        "s3vectors:DeleteVectors",
                    ],
                    resources=self.vectors.index_arns,
                )
            )
        if self.config.vector_store == "dynamodb":
            grant(
                iam.PolicyStatement(
                    sid="ReadIndexSnapshots",
                    actions=["s3:GetObject"],
                    resources=[self._snapshots_arn()],
                )
            )

    def _grant_maintenance(self) -> None:
        self._grant_switch()
        grant = self.maintenance.handler.add_to_role_policy
        table_arn = self.storage.table.table_arn
        # GET /health's published count: that one item only (its partition key). The
        # scale tier reads it first (is a recount due?) and recounts with a COUNT query.
        scale_tier = self.config.vector_store != "dynamodb"
        grant(
            iam.PolicyStatement(
                sid="PublishImageCount",
                actions=["dynamodb:PutItem", *(["dynamodb:GetItem"] if scale_tier else [])],
                resources=[table_arn],
                conditions={
                    "ForAllValues:StringEquals": {"dynamodb:LeadingKeys": [r.IMAGE_COUNT_ID]}
                },
            )
        )
        if scale_tier:
            grant(
                iam.PolicyStatement(
                    sid="CountIndexedImages",
                    actions=["dynamodb:Query"],
                    resources=[f"{table_arn}/index/{r.INDEX_BY_STATUS}"],
                )
            )
            return
        # Loading like a search instance: Scan (no snapshot yet), the change log, vectors.
        grant(
            iam.PolicyStatement(
                sid="ReadImageVectors",
                actions=["dynamodb:Scan", "dynamodb:BatchGetItem"],
                resources=[table_arn],
            )
        )
        # The hourly reconciliation (decision 41) runs only outside a model switch.
        reconciles = self.config.previous_space is None
        # The change log: Query since a watermark; Scan of it all (the reconciliation).
        grant(
            iam.PolicyStatement(
                sid="ReadChangeLog",
                actions=["dynamodb:Query", *(["dynamodb:Scan"] if reconciles else [])],
                resources=[f"{table_arn}/index/{r.INDEX_CHANGES}"],
            )
        )
        if reconciles:
            # It re-announces a record in the change log: an UpdateItem of its change-log
            # stamp only (conditional on its revision), never of its data.
            grant(
                iam.PolicyStatement(
                    sid="ReannounceChanges",
                    actions=["dynamodb:UpdateItem"],
                    resources=[table_arn],
                    conditions={
                        "ForAllValues:StringEquals": {"dynamodb:Attributes": list(r.REANNOUNCED)}
                    },
                )
            )
        # Snapshot objects and their pointer (multipart upload: PutObject, and Abort
        # when one fails); old snapshots are deleted by key (no listing).
        grant(
            iam.PolicyStatement(
                sid="WriteIndexSnapshots",
                actions=[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                ],
                resources=[self._snapshots_arn()],
            )
        )

    def _grant_switch(self) -> None:
        """The model switch's orchestration (maintenance). Also without previousModelId:
        every run reads the state item, and a switch a deploy abandoned is healed by
        re-embedding (decision 42); the previous index's removal only during a switch."""
        if self.maintenance is None:
            return
        grant = self.maintenance.handler.add_to_role_policy
        table_arn = self.storage.table.table_arn
        # The state item (GetItem, conditional PutItem); the previous vectors' removal
        # (Scan for records holding one, conditional UpdateItem removing it); given-up
        # records made failed/rejected after the flip (GetItem, conditional PutItem).
        grant(
            iam.PolicyStatement(
                sid="ModelSwitchCatalog",
                actions=[
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:Scan",
                ],
                resources=[table_arn],
            )
        )
        # Counts, the records still lacking the new model's vector and those it gave up
        # (no vectors read).
        grant(
            iam.PolicyStatement(
                sid="ModelSwitchProgress",
                actions=["dynamodb:Query"],
                resources=[f"{table_arn}/index/{r.INDEX_BY_STATUS}"],
            )
        )
        grant(
            iam.PolicyStatement(
                sid="ModelSwitchReembed",
                actions=["sqs:SendMessage", "sqs:GetQueueAttributes"],
                resources=[self.ingest.queue.queue_arn],
            )
        )
        if self.vectors is not None and self.vectors.previous_index is not None:
            grant(
                iam.PolicyStatement(
                    sid="ModelSwitchRemovePreviousVectors",
                    actions=["s3vectors:ListVectors", "s3vectors:DeleteVectors"],
                    resources=[self.vectors.previous_index.attr_index_arn],
                )
            )

    def _snapshots_arn(self) -> str:
        return self.storage.bucket.arn_for_objects(f"{r.SNAPSHOT_PREFIX}*")

    def _model_region_rule(self) -> None:
        """Finding 9.15 at deploy time: synth checks the region when it knows it; an
        environment-agnostic template carries the same check as a CloudFormation rule,
        so a deploy into a region without the model fails before any resource exists."""
        regions = list(self.config.allowed_model_regions)
        self._region_rule(
            "ModelOfferedInRegion",
            regions,
            f"{self.config.model_id} is not offered in this region (known: "
            f"{', '.join(regions)}). Deploy to one of those, or pass "
            "-c modelRegions=<region> if AWS has added it there since.",
        )

    def _region_rule(self, rule_id: str, regions: list[str], description: str) -> None:
        """A CloudFormation rule: the deploy stops unless its region is one of these."""
        CfnRule(
            self,
            rule_id,
            assertions=[
                CfnRuleAssertion(
                    assert_=Fn.condition_contains(regions, Aws.REGION),
                    assert_description=description,
                )
            ],
        )

    def _vector_store_region_rule(self) -> None:
        """The same check for the scale tier (docs/decisions.md entry 35): an
        environment-agnostic template deployed to a region without Amazon S3 Vectors
        stops before any resource is created, saying why."""
        if self.vectors is None:
            return
        regions = list(self.config.allowed_vector_store_regions)
        self._region_rule(
            "S3VectorsOfferedInRegion",
            regions,
            "vectorStore=s3vectors: Amazon S3 Vectors is not available in this "
            f"region (known: {', '.join(regions)}). Deploy to one of those or use "
            "vectorStore=dynamodb, or pass -c vectorStoreRegions=<region> if AWS "
            "has added it there since.",
        )

    def _invoke_model_statement(self) -> iam.PolicyStatement:
        # During a model switch both models: ingest embeds new uploads with both, search
        # embeds queries with whichever serves. The next deploy drops the previous one.
        arns = [arn for model_id in self.config.model_ids for arn in self.model_arns(model_id)]
        return iam.PolicyStatement(
            sid="InvokeEmbeddingModel",
            actions=["bedrock:InvokeModel"],
            resources=list(dict.fromkeys(arns)),
        )

    # --- outputs ----------------------------------------------------------------

    def _outputs(self) -> None:
        api = self.search.api
        # RestApi adds its own endpoint output; ApiUrl below is the one to read.
        api.node.try_remove_child("Endpoint")
        outputs = {
            r.OUTPUT_API_URL: (api.url, "Base URL of the search API (SigV4, execute-api)"),
            r.OUTPUT_BUCKET: (self.storage.bucket.bucket_name, "Images bucket"),
            r.OUTPUT_UPLOAD_PREFIX: (self.config.upload_prefix, "Drop folder in the bucket"),
            r.OUTPUT_TABLE: (self.storage.table.table_name, "Images table"),
            r.OUTPUT_QUEUE_URL: (self.ingest.queue.queue_url, "Ingest queue"),
            r.OUTPUT_DLQ_URL: (self.ingest.dead_letter_queue.queue_url, "Dead-letter queue"),
            r.OUTPUT_MODEL_ID: (self.config.model_id, "Bedrock embedding model"),
            r.OUTPUT_DIMENSION: (str(self.config.embedding_dimension), "Embedding dimension"),
            r.OUTPUT_EMBEDDED_MAX_IMAGES: (
                str(self.config.embedded_max_images),
                "Embedded index capacity (beyond it: vectorStore=s3vectors)",
            ),
        }
        outputs[r.OUTPUT_VECTOR_STORE] = (self.config.vector_store, "Vector store (tier)")
        if self.vectors is not None:
            outputs[r.OUTPUT_VECTOR_BUCKET] = (self.vectors.bucket_name, "S3 Vectors bucket")
            outputs[r.OUTPUT_VECTOR_INDEX] = (self.vectors.index_name, "S3 Vectors index")
        for name, (value, description) in outputs.items():
            CfnOutput(self, name, value=value, description=description)

    # --- cdk-nag ----------------------------------------------------------------

    def _suppress_nag_findings(self) -> None:
        """Each suppression names the exact finding (``applies_to``) and why it stands."""
        xray = NagPackSuppression(
            id="AwsSolutions-IAM5",
            reason="X-Ray PutTraceSegments/PutTelemetryRecords support no resource-level "
            "permissions (active tracing); AWS requires Resource '*'.",
            applies_to=["Resource::*"],
        )
        # cdk-nag renders {"Fn::GetAtt": [id, "Arn"]} as <id.Arn>.
        bucket_arn = f"Resource::<{self._logical_id(self.storage.bucket)}.Arn>"
        uploads_objects = f"{bucket_arn}/{self.config.upload_prefix}*"
        thumbnails_objects = f"{bucket_arn}/{r.THUMBNAIL_PREFIX}*"
        NagSuppressions.add_resource_suppressions(
            self.ingest.handler.role,
            [
                xray,
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Object-level access limited to the upload prefix (read) and "
                    "the thumbnail prefix (read/write/delete): keys are not known in advance.",
                    applies_to=[uploads_objects, thumbnails_objects],
                ),
            ],
            apply_to_children=True,
        )
        table = self._logical_id(self.storage.table)
        snapshot_objects = f"{bucket_arn}/{r.SNAPSHOT_PREFIX}*"
        NagSuppressions.add_resource_suppressions(
            self.maintenance.handler.role,
            [
                xray,
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Snapshot objects have unique names written at run time; "
                    "access is limited to the index snapshot prefix.",
                    applies_to=[snapshot_objects],
                ),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            self.search.handler.role,
            [
                xray,
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Read-only access to the images table's own GSIs (the change "
                    "log, by_status) and object access limited to the upload and thumbnail "
                    "prefixes of the images bucket, and reads of the index snapshots.",
                    applies_to=[
                        f"Resource::<{table}.Arn>/index/*",
                        uploads_objects,
                        thumbnails_objects,
                        *([snapshot_objects] if self.config.vector_store == "dynamodb" else []),
                    ],
                ),
            ],
            apply_to_children=True,
        )
        # A profile whose destinations AWS does not list: InvokeModel on that one model in
        # any region (decision 34). cdk-nag renders the partition as <AWS::Partition>.
        profiles = [r.INFERENCE_PROFILES.get(model_id) for model_id in self.config.model_ids]
        any_region_models = [
            f"Resource::arn:<AWS::Partition>:bedrock:{r.ANY_REGION}::foundation-model/"
            f"{profile.model_id}"
            for profile in profiles
            if profile is not None and r.ANY_REGION in profile.destinations
        ]
        if any_region_models:
            NagSuppressions.add_resource_suppressions(
                [self.ingest.handler.role, self.search.handler.role],
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM5",
                        reason="InvokeModel on this one foundation model in any region: the "
                        "cross-region inference profile may route to regions AWS does not "
                        "list (docs/decisions.md entry 34).",
                        applies_to=list(dict.fromkeys(any_region_models)),
                    )
                ],
                apply_to_children=True,
            )
        NagSuppressions.add_resource_suppressions(
            [
                self.ingest.function,
                self.search.function,
                self.maintenance.function,
            ],
            [
                NagPackSuppression(
                    id="AwsSolutions-L1",
                    reason="Python 3.11 on purpose: the asset ships bytecode compiled by "
                    "the build's interpreter, which must match the runtime's minor version, "
                    "and the suite runs on 3.11 (docs/decisions.md).",
                )
            ],
            apply_to_children=True,
        )

        api = self.search.api
        NagSuppressions.add_resource_suppressions(
            api,
            [
                NagPackSuppression(
                    id="AwsSolutions-COG4",
                    reason="The API uses IAM (SigV4) authorization on every route but "
                    "GET /health: callers are AWS principals, not Cognito users.",
                ),
            ],
            apply_to_children=True,
        )
        NagSuppressions.add_resource_suppressions(
            api,
            [
                NagPackSuppression(
                    id="AwsSolutions-APIG2",
                    reason="Requests are validated in the search function (pydantic), "
                    "which answers 400/422 with the API's JSON error shape; API Gateway "
                    "models would duplicate that schema and answer in another shape.",
                ),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            api.deployment_stage,
            [
                NagPackSuppression(
                    id="AwsSolutions-APIG3",
                    reason="No WAF by default: every route but /health needs SigV4, the "
                    "stage is throttled, and a web ACL adds a fixed monthly cost. Attach "
                    "one to the stage where policy requires it.",
                ),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            self.search.methods[("/health", "GET")],
            [
                NagPackSuppression(
                    id="AwsSolutions-APIG4",
                    reason="GET /health is public by contract (SPEC section 6): it "
                    "returns only a status, an image count and the model id.",
                ),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            api,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM4",
                    reason="Account-wide API Gateway CloudWatch role (one per region, "
                    "used by every REST API of the account for access and execution "
                    "logs); AWS's policy for exactly this purpose.",
                    applies_to=[
                        "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                        "AmazonAPIGatewayPushToCloudWatchLogs"
                    ],
                ),
            ],
            apply_to_children=True,
        )
        # CDK's singleton Lambda behind Custom::S3BucketNotifications: it is created with
        # the managed logs policy (no way to pass another); its own grant is scoped to
        # s3:PutBucketNotification on the images bucket.
        notifications_handler = self.node.try_find_child(NOTIFICATIONS_HANDLER_ID)
        if notifications_handler is not None:
            NagSuppressions.add_resource_suppressions(
                notifications_handler,
                [
                    NagPackSuppression(
                        id="AwsSolutions-IAM4",
                        reason="CDK-managed custom resource handler that configures the "
                        "bucket notifications at deploy time; CDK attaches the "
                        "logs-only AWSLambdaBasicExecutionRole policy.",
                        applies_to=[
                            "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                            "AWSLambdaBasicExecutionRole"
                        ],
                    ),
                ],
                apply_to_children=True,
            )

    def _logical_id(self, construct: Construct) -> str:
        child = construct.node.default_child
        assert child is not None
        return self.get_logical_id(child)  # type: ignore[arg-type]
