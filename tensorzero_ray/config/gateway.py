"""`[gateway]` (spec §3.2)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BatchWrites(Strict):
    enabled: bool = False
    flush_interval_ms: int = Field(default=100, gt=0)
    max_rows: int = Field(default=1000, gt=0)
    max_rows_postgres: int | None = None
    write_queue_capacity: int | None = None


class Observability(Strict):
    enabled: bool | None = None
    backend: Literal["auto", "clickhouse", "postgres"] = "auto"
    async_writes: bool = True
    batch_writes: BatchWrites = Field(default_factory=BatchWrites)
    disable_automatic_migrations: bool = False


class OtlpTraces(Strict):
    enabled: bool = False
    format: Literal["opentelemetry", "openinference"] = "opentelemetry"
    extra_headers: dict[str, str] = Field(default_factory=dict)
    include_content: bool | None = None


class Otlp(Strict):
    traces: OtlpTraces = Field(default_factory=OtlpTraces)


class Export(Strict):
    otlp: Otlp = Field(default_factory=Otlp)


class GatewayMetrics(Strict):
    tensorzero_inference_latency_overhead_seconds_buckets: list[float] = Field(
        default_factory=lambda: [0.001, 0.01, 0.1]
    )


class AuthCache(Strict):
    enabled: bool = True
    ttl_ms: int = 1000


class Auth(Strict):
    enabled: bool = False
    cache: AuthCache = Field(default_factory=AuthCache)


class CacheValkey(Strict):
    ttl_s: int = 86400


class Cache(Strict):
    enabled: bool | None = None
    backend: Literal["auto", "clickhouse", "valkey"] = "auto"
    valkey: CacheValkey = Field(default_factory=CacheValkey)


class TemplateFilesystemAccess(Strict):
    enabled: bool = False  # deprecated: `base_path` alone turns access on
    base_path: str | None = None

    def root(self) -> str | None:
        """The folder templates may include from, or None for no filesystem access."""
        return self.base_path


class Relay(Strict):
    gateway_url: str | None = None
    api_key_location: Any = None


class Security(Strict):
    """tensorzero-ray's own settings (TensorZero has no such table)."""

    # Hosts (name or IP, optionally `:port`) and networks (CIDR) that input-file URLs may
    # point at although they are private, loopback or link-local; public ones need no entry.
    fetch_allowed_hosts: list[str] = Field(default_factory=list)
    # Host names the web UI answers to besides localhost; `"*"` turns the check off.
    ui_allowed_hosts: list[str] = Field(default_factory=list)


class GatewayConfig(Strict):
    bind_address: str | None = None
    base_path: str = "/"
    debug: bool = False
    disable_pseudonymous_usage_analytics: bool = False
    fetch_and_encode_input_files_before_inference: bool = False
    global_outbound_http_timeout_ms: int = Field(default=900_000, gt=0)
    template_filesystem_access: TemplateFilesystemAccess = Field(default_factory=TemplateFilesystemAccess)
    observability: Observability = Field(default_factory=Observability)
    export: Export = Field(default_factory=Export)
    metrics: GatewayMetrics = Field(default_factory=GatewayMetrics)
    auth: Auth = Field(default_factory=Auth)
    security: Security = Field(default_factory=Security)
    cache: Cache = Field(default_factory=Cache)
    relay: Relay = Field(default_factory=Relay)
    unstable_error_json: bool = False
    unstable_disable_feedback_target_validation: bool = False
