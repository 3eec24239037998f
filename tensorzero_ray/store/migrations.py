"""TensorZero's ClickHouse schema (spec §4) as versioned, idempotent migrations. Each runs
once, is recorded in TensorZeroMigration, and only uses IF NOT EXISTS statements, so a rerun
after a crash half-way is safe."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from tensorzero_ray import __version__

logger = logging.getLogger(__name__)

# Retried batches carry the same deduplication token; tables remember recent tokens.
DEDUP = "SETTINGS non_replicated_deduplication_window = 10000"
FINISH_REASON = (
    "Enum8('stop' = 1, 'length' = 2, 'tool_call' = 3, 'content_filter' = 4, 'unknown' = 5, 'stop_sequence' = 6)"
)


@dataclass(frozen=True)
class Migration:
    id: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        0,
        "uint_to_uuid function",
        (
            "CREATE FUNCTION IF NOT EXISTS uint_to_uuid AS (x) -> reinterpretAsUUID(concat("
            "substring(reinterpretAsString(x), 9, 8), substring(reinterpretAsString(x), 1, 8)))",
        ),
    ),
    Migration(
        1,
        "inference tables",
        (
            f"""CREATE TABLE IF NOT EXISTS ChatInference (
            id UUID, function_name LowCardinality(String), variant_name LowCardinality(String),
            episode_id UUID, input String, output String, tool_params String DEFAULT '',
            inference_params String, processing_time_ms Nullable(UInt32),
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), tags Map(String, String) DEFAULT map(),
            extra_body Nullable(String), ttft_ms Nullable(UInt32),
            dynamic_tools Array(String) DEFAULT [], dynamic_provider_tools Array(String) DEFAULT [],
            allowed_tools Nullable(String), tool_choice Nullable(String), parallel_tool_calls Nullable(Bool),
            snapshot_hash Nullable(UInt256),
            INDEX inference_id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY (function_name, variant_name, episode_id) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS JsonInference (
            id UUID, function_name LowCardinality(String), variant_name LowCardinality(String),
            episode_id UUID, input String, output String, output_schema String, inference_params String,
            processing_time_ms Nullable(UInt32), timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id),
            tags Map(String, String) DEFAULT map(), extra_body Nullable(String), auxiliary_content String DEFAULT '',
            ttft_ms Nullable(UInt32), snapshot_hash Nullable(UInt256),
            INDEX inference_id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY (function_name, variant_name, episode_id) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS ModelInference (
            id UUID, inference_id UUID, raw_request String, raw_response String,
            model_name LowCardinality(String), model_provider_name LowCardinality(String),
            input_tokens Nullable(UInt32), output_tokens Nullable(UInt32),
            response_time_ms Nullable(UInt32), ttft_ms Nullable(UInt32),
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), system Nullable(String),
            input_messages String, output String, cached Bool DEFAULT false,
            finish_reason Nullable({FINISH_REASON}), cost Nullable(Decimal(18, 9)),
            provider_cache_read_input_tokens Nullable(UInt32), provider_cache_write_input_tokens Nullable(UInt32),
            function_name LowCardinality(String) DEFAULT '', variant_name LowCardinality(String) DEFAULT '',
            snapshot_hash Nullable(UInt256),
            INDEX inference_id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY inference_id {DEDUP}""",
        ),
    ),
    Migration(
        2,
        "feedback tables",
        (
            f"""CREATE TABLE IF NOT EXISTS BooleanMetricFeedback (
            id UUID, target_id UUID, metric_name LowCardinality(String), value Bool,
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), tags Map(String, String) DEFAULT map(),
            snapshot_hash Nullable(UInt256), INDEX id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY (metric_name, target_id) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS FloatMetricFeedback (
            id UUID, target_id UUID, metric_name LowCardinality(String), value Float32,
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), tags Map(String, String) DEFAULT map(),
            snapshot_hash Nullable(UInt256), INDEX id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = MergeTree ORDER BY (metric_name, target_id) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS CommentFeedback (
            id UUID, target_id UUID, target_type Enum8('inference' = 1, 'episode' = 2), value String,
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), tags Map(String, String) DEFAULT map(),
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY target_id {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS DemonstrationFeedback (
            id UUID, inference_id UUID, value String,
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), tags Map(String, String) DEFAULT map(),
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY inference_id {DEDUP}""",
        ),
    ),
    Migration(
        3,
        "lookup tables by id, episode and tag",
        (
            f"""CREATE TABLE IF NOT EXISTS InferenceById (
            id_uint UInt128, function_name LowCardinality(String), variant_name LowCardinality(String),
            episode_id UUID, function_type Enum8('chat' = 1, 'json' = 2), snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY id_uint {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS InferenceByEpisodeId (
            episode_id_uint UInt128, id_uint UInt128, function_name LowCardinality(String),
            variant_name LowCardinality(String), function_type Enum8('chat' = 1, 'json' = 2),
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY (episode_id_uint, id_uint) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS InferenceTag (
            function_name LowCardinality(String), key String, value String, inference_id UUID,
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY (function_name, key, value) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS FeedbackTag (
            metric_name LowCardinality(String), key String, value String, feedback_id UUID,
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY (metric_name, key, value) {DEDUP}""",
            *[
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {kind}InferenceByIdView TO InferenceById AS
                SELECT toUInt128(id) AS id_uint, function_name, variant_name, episode_id,
                       '{kind.lower()}' AS function_type, snapshot_hash FROM {kind}Inference"""
                for kind in ("Chat", "Json")
            ],
            *[
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {kind}InferenceByEpisodeIdView TO InferenceByEpisodeId AS
                SELECT toUInt128(episode_id) AS episode_id_uint, toUInt128(id) AS id_uint, function_name,
                       variant_name, '{kind.lower()}' AS function_type, snapshot_hash FROM {kind}Inference"""
                for kind in ("Chat", "Json")
            ],
            *[
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {kind}InferenceTagView TO InferenceTag AS
                SELECT function_name, key, tags[key] AS value, id AS inference_id, snapshot_hash
                FROM {kind}Inference ARRAY JOIN mapKeys(tags) AS key"""
                for kind in ("Chat", "Json")
            ],
            *[
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {kind}FeedbackTagView TO FeedbackTag AS
                SELECT {metric} AS metric_name, key, tags[key] AS value, id AS feedback_id, snapshot_hash
                FROM {kind}Feedback ARRAY JOIN mapKeys(tags) AS key"""
                for kind, metric in (
                    ("BooleanMetric", "metric_name"),
                    ("FloatMetric", "metric_name"),
                    ("Comment", "'comment'"),
                    ("Demonstration", "'demonstration'"),
                )
            ],
        ),
    ),
    Migration(
        4,
        "feedback lookups by target",
        (
            *[
                f"""CREATE TABLE IF NOT EXISTS {kind}MetricFeedbackByTargetId (
                id UUID, target_id UUID, metric_name LowCardinality(String), value {value},
                tags Map(String, String) DEFAULT map(), snapshot_hash Nullable(UInt256)
            ) ENGINE = MergeTree ORDER BY target_id {DEDUP}"""
                for kind, value in (("Boolean", "Bool"), ("Float", "Float32"))
            ],
            *[
                f"""CREATE MATERIALIZED VIEW IF NOT EXISTS {kind}MetricFeedbackByTargetIdView
                TO {kind}MetricFeedbackByTargetId AS
                SELECT id, target_id, metric_name, value, tags, snapshot_hash FROM {kind}MetricFeedback"""
                for kind in ("Boolean", "Float")
            ],
            f"""CREATE TABLE IF NOT EXISTS CommentFeedbackByTargetId (
            id UUID, target_id UUID, target_type Enum8('inference' = 1, 'episode' = 2), value String,
            tags Map(String, String) DEFAULT map(), snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY target_id {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS CommentFeedbackByTargetIdView TO CommentFeedbackByTargetId AS
            SELECT id, target_id, target_type, value, tags, snapshot_hash FROM CommentFeedback""",
            f"""CREATE TABLE IF NOT EXISTS DemonstrationFeedbackByInferenceId (
            id UUID, inference_id UUID, value String, tags Map(String, String) DEFAULT map(),
            snapshot_hash Nullable(UInt256)
        ) ENGINE = MergeTree ORDER BY inference_id {DEDUP}""",
            """CREATE MATERIALIZED VIEW IF NOT EXISTS DemonstrationFeedbackByInferenceIdView
            TO DemonstrationFeedbackByInferenceId AS
            SELECT id, inference_id, value, tags, snapshot_hash FROM DemonstrationFeedback""",
        ),
    ),
    Migration(
        5,
        "dataset tables",
        (
            """CREATE TABLE IF NOT EXISTS ChatInferenceDatapoint (
            dataset_name LowCardinality(String), function_name LowCardinality(String), id UUID,
            episode_id Nullable(UUID), input String, output Nullable(String), tool_params String DEFAULT '',
            tags Map(String, String) DEFAULT map(), auxiliary String DEFAULT '', is_deleted Bool DEFAULT false,
            updated_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), staled_at Nullable(DateTime64(6, 'UTC')),
            source_inference_id Nullable(UUID), is_custom Bool DEFAULT false, name Nullable(String),
            dynamic_tools Array(String) DEFAULT [], dynamic_provider_tools Array(String) DEFAULT [],
            allowed_tools Nullable(String), tool_choice Nullable(String), parallel_tool_calls Nullable(Bool),
            snapshot_hash Nullable(UInt256), INDEX id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (dataset_name, function_name, id)""",
            """CREATE TABLE IF NOT EXISTS JsonInferenceDatapoint (
            dataset_name LowCardinality(String), function_name LowCardinality(String), id UUID,
            episode_id Nullable(UUID), input String, output Nullable(String), output_schema String,
            tags Map(String, String) DEFAULT map(), auxiliary String DEFAULT '', is_deleted Bool DEFAULT false,
            updated_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), staled_at Nullable(DateTime64(6, 'UTC')),
            source_inference_id Nullable(UUID), is_custom Bool DEFAULT false, name Nullable(String),
            snapshot_hash Nullable(UInt256), INDEX id_index id TYPE bloom_filter GRANULARITY 1
        ) ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY (dataset_name, function_name, id)""",
        ),
    ),
    # Our addition to TensorZero's schema: provider calls that failed (and were retried on the
    # next provider or variant), so the models page can show error rates.
    Migration(
        6,
        "failed provider calls",
        (
            f"""CREATE TABLE IF NOT EXISTS ModelProviderFailure (
            id UUID, inference_id UUID, function_name LowCardinality(String), variant_name LowCardinality(String),
            model_name LowCardinality(String), model_provider_name LowCardinality(String), error String,
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id)
        ) ENGINE = MergeTree ORDER BY (model_name, model_provider_name, id) {DEDUP}""",
        ),
    ),
    Migration(
        7,
        "evaluation runs",
        (
            f"""CREATE TABLE IF NOT EXISTS DynamicEvaluationRun (
            run_id_uint UInt128, variant_pins Map(String, String), tags Map(String, String),
            project_name Nullable(String), run_display_name Nullable(String), is_deleted Bool DEFAULT false,
            updated_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), snapshot_hash Nullable(UInt256)
        ) ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY run_id_uint {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS DynamicEvaluationRunEpisode (
            run_id UUID, episode_id_uint UInt128, variant_pins Map(String, String), datapoint_name Nullable(String),
            tags Map(String, String), is_deleted Bool DEFAULT false,
            updated_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), snapshot_hash Nullable(UInt256)
        ) ENGINE = ReplacingMergeTree(updated_at, is_deleted) ORDER BY episode_id_uint {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS InferenceEvaluationRuns (
            run_id_uint UInt128, evaluation_name String, function_name String, function_type LowCardinality(String),
            dataset_name String, variant_names Array(String), metrics String, source LowCardinality(String),
            snapshot_hash Nullable(String), created_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC'),
            updated_at DateTime64(3, 'UTC') DEFAULT now64(3, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY run_id_uint {DEDUP}""",
            """CREATE TABLE IF NOT EXISTS StaticEvaluationHumanFeedback (
            metric_name LowCardinality(String), datapoint_id UUID, output String, value String,
            feedback_id UUID, evaluator_inference_id UUID, timestamp DateTime MATERIALIZED UUIDv7ToDateTime(feedback_id)
        ) ENGINE = MergeTree ORDER BY (metric_name, datapoint_id, output) SETTINGS index_granularity = 256,
            non_replicated_deduplication_window = 10000""",
        ),
    ),
    Migration(
        8,
        "evaluation run progress",
        (
            # Beyond TensorZero: how many datapoints a run planned and whether it finished, so a
            # run whose job was stopped midway shows as incomplete instead of as a short run.
            "ALTER TABLE InferenceEvaluationRuns ADD COLUMN IF NOT EXISTS num_datapoints UInt32 DEFAULT 0",
            "ALTER TABLE InferenceEvaluationRuns ADD COLUMN IF NOT EXISTS status LowCardinality(String) DEFAULT ''",
        ),
    ),
    Migration(
        9,
        "adaptive experiment states",
        (
            # Beyond TensorZero (it keeps the state in memory): every track-and-stop update, so
            # the UI can draw it over time and a restarted stack knows which state each episode
            # began under.
            f"""CREATE TABLE IF NOT EXISTS AdaptiveExperimentState (
            function_name LowCardinality(String), namespace String, metric_name LowCardinality(String),
            computed_at DateTime64(3, 'UTC'), effective_from DateTime64(3, 'UTC'), state String,
            probabilities Map(String, Float64), arms String, leader Nullable(String),
            stopping_statistic Nullable(Float64), threshold Nullable(Float64), winner Nullable(String)
        ) ENGINE = MergeTree ORDER BY (function_name, namespace, effective_from) {DEDUP}""",
        ),
    ),
    Migration(
        10,
        "inference cache",
        (
            f"""CREATE TABLE IF NOT EXISTS ModelInferenceCache (
            short_cache_key UInt64, long_cache_key FixedString(64), timestamp DateTime DEFAULT now(),
            output String, raw_request String, raw_response String, is_deleted Bool DEFAULT false,
            input_tokens Nullable(UInt32), output_tokens Nullable(UInt32), finish_reason Nullable({FINISH_REASON}),
            INDEX long_key_index long_cache_key TYPE bloom_filter GRANULARITY 1
        ) ENGINE = ReplacingMergeTree(timestamp, is_deleted) PARTITION BY toYYYYMM(timestamp)
        ORDER BY (short_cache_key, long_cache_key) PRIMARY KEY short_cache_key
        SETTINGS index_granularity = 256, non_replicated_deduplication_window = 10000""",
        ),
    ),
    Migration(
        11,
        "dynamic in-context learning examples",
        (
            f"""CREATE TABLE IF NOT EXISTS DynamicInContextLearningExample (
            id UUID, function_name LowCardinality(String), variant_name LowCardinality(String), namespace String,
            input String, output String, embedding Array(Float32),
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id)
        ) ENGINE = MergeTree ORDER BY (function_name, variant_name, namespace) {DEDUP}""",
        ),
    ),
    Migration(
        12,
        "batch inference",
        (
            f"""CREATE TABLE IF NOT EXISTS BatchRequest (
            batch_id UUID, id UUID, batch_params String, model_name LowCardinality(String),
            model_provider_name LowCardinality(String), status Enum8('pending' = 1, 'completed' = 2, 'failed' = 3),
            errors Array(String), timestamp DateTime MATERIALIZED UUIDv7ToDateTime(id), raw_request String,
            raw_response String, function_name LowCardinality(String), variant_name LowCardinality(String)
        ) ENGINE = MergeTree ORDER BY (batch_id, id) {DEDUP}""",
            f"""CREATE TABLE IF NOT EXISTS BatchModelInference (
            inference_id UUID, batch_id UUID, function_name LowCardinality(String),
            variant_name LowCardinality(String), episode_id UUID, input String, input_messages String,
            system Nullable(String), tool_params Nullable(String), inference_params String, raw_request String,
            model_name LowCardinality(String), model_provider_name LowCardinality(String),
            output_schema Nullable(String), tags Map(String, String),
            timestamp DateTime MATERIALIZED UUIDv7ToDateTime(inference_id), dynamic_tools Array(String),
            dynamic_provider_tools Array(String), allowed_tools Nullable(String), tool_choice Nullable(String),
            parallel_tool_calls Nullable(Bool)
        ) ENGINE = MergeTree ORDER BY (batch_id, inference_id) {DEDUP}""",
        ),
    ),
    Migration(
        13,
        "optimization tasks",
        (
            # Beyond TensorZero's schema (it keeps tasks in Postgres): each state of a GEPA task,
            # written by the gateway when it starts the job and by the job as it goes.
            """CREATE TABLE IF NOT EXISTS OptimizationTask (
            task_id UUID, kind LowCardinality(String), status LowCardinality(String), task String,
            report String, updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY task_id""",
        ),
    ),
    Migration(
        14,
        "api keys",
        (
            # TensorZero keeps keys in Postgres; here each state of a key is a row, the latest wins.
            # The key itself is never stored: its SHA-256 only.
            """CREATE TABLE IF NOT EXISTS TensorZeroApiKey (
            public_id String, hash String, description String, organization String, workspace String,
            created_at DateTime64(6, 'UTC'), expires_at Nullable(DateTime64(6, 'UTC')),
            disabled_at Nullable(DateTime64(6, 'UTC')), updated_at DateTime64(6, 'UTC')
        ) ENGINE = ReplacingMergeTree(updated_at) ORDER BY public_id""",
        ),
    ),
)

BOOKKEEPING = """CREATE TABLE IF NOT EXISTS TensorZeroMigration (
    migration_id UInt32, migration_name String, gateway_version String, gateway_git_sha String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6, 'UTC'), execution_time_ms UInt64,
    extra_data Nullable(String)
) ENGINE = MergeTree PRIMARY KEY migration_id"""


def run_migrations(command, query) -> list[int]:
    """Apply what is missing, in order; return the ids applied now. `command` and `query` are
    the store's synchronous statement and row functions."""
    command(BOOKKEEPING)
    done = {row["migration_id"] for row in query("SELECT migration_id FROM TensorZeroMigration")}
    applied = []
    for migration in MIGRATIONS:
        if migration.id in done:
            continue
        started = time.monotonic()
        for statement in migration.statements:
            command(statement)
        elapsed = int((time.monotonic() - started) * 1000)
        command(
            "INSERT INTO TensorZeroMigration (migration_id, migration_name, gateway_version, gateway_git_sha, "
            f"execution_time_ms) VALUES ({migration.id}, '{migration.name}', '{__version__}', '', {elapsed})"
        )
        logger.info("applied migration %s (%s) in %d ms", migration.id, migration.name, elapsed)
        applied.append(migration.id)
    return applied
