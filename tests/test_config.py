"""Loading tensorzero.toml: every table parses, paths resolve per file, and each broken config
fails start-up with one message naming the file and the full key path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tensorzero_ray.config import ConfigError, load_config
from tensorzero_ray.config.credentials import CredentialWithFallback, resolve_credential
from tensorzero_ray.config.functions import AdaptiveExperimentation, StaticExperimentation
from tensorzero_ray.config.variants import (
    BestOfNVariantConfig,
    ChainOfThoughtVariantConfig,
    ChatCompletionVariantConfig,
    DiclVariantConfig,
    MixtureOfNVariantConfig,
)
from tensorzero_ray.errors import ApiKeyMissing

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[models.m]
routing = ["p"]
[models.m.providers.p]
type = "dummy"
model_name = "good"

[functions.f]
type = "chat"
[functions.f.variants.v]
type = "chat_completion"
model = "m"
"""


def write(tmp_path: Path, text: str, name: str = "tensorzero.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


BROKEN = [
    pytest.param(
        BASE + "temprature = 0.3\n", "functions.f.variants.v.temprature: unknown key", id="unknown-variant-key"
    ),
    pytest.param(BASE + "[gateway]\ndebugg = true\n", "gateway.debugg: unknown key", id="unknown-gateway-key"),
    pytest.param(BASE + "[widgets]\nx = 1\n", "widgets: unknown key", id="unknown-top-level-table"),
    pytest.param(
        BASE + 'temperature = "hot"\n',
        "functions.f.variants.v.temperature: Input should be a valid number",
        id="wrong-type",
    ),
    pytest.param(
        BASE.replace('model = "m"', 'model = "missing"'),
        "functions.f.variants.v.model: unknown model `missing`",
        id="unknown-model",
    ),
    pytest.param(
        BASE.replace('type = "chat"', 'type = "chat"\ntools = ["nope"]'),
        "functions.f.tools.0: unknown tool `nope`",
        id="unknown-tool",
    ),
    pytest.param(
        BASE + 'system_template = "missing.minijinja"\n',
        "functions.f.variants.v.system_template: file not found:",
        id="missing-template-file",
    ),
    pytest.param(
        BASE.replace('routing = ["p"]', 'routing = ["p", "q"]'),
        "models.m.routing.1: routing names unknown provider `q`",
        id="unknown-routing-entry",
    ),
    pytest.param(
        BASE.replace('model_name = "good"\n', ""),
        "models.m.providers.p.model_name: missing required key",
        id="missing-required-key",
    ),
    pytest.param(
        BASE + '[functions.f.experimentation]\ntype = "static"\ncandidate_variants = ["v", "ghost"]\n',
        "functions.f.experimentation.candidate_variants.1: unknown variant `ghost`",
        id="unknown-candidate",
    ),
    pytest.param(
        BASE + '[functions.f.experimentation]\ntype = "adaptive"\ncandidate_variants = ["v"]\nmetric = "nope"\n',
        "functions.f.experimentation.metric: unknown metric `nope`",
        id="unknown-adaptive-metric",
    ),
    pytest.param(
        BASE + '[functions.f.variants.cot]\ntype = "experimental_chain_of_thought"\nmodel = "m"\n',
        "functions.f.variants.cot.type: `experimental_chain_of_thought` serves JSON functions only",
        id="chain-of-thought-on-chat",
    ),
    pytest.param(
        BASE
        + '[metrics.ok]\ntype = "boolean"\noptimize = "max"\nlevel = "inference"\n'
        + '[functions.f.experimentation]\ntype = "adaptive"\ncandidate_variants = ["v"]\nmetric = "ok"\nmin_prob = 1.5\n',
        "functions.f.experimentation.min_prob: min_prob 1.5 x 1 candidates is above 1",
        id="adaptive-min-prob-too-high",
    ),
    pytest.param(
        BASE + 'weight = 1.0\n[functions.f.experimentation]\ntype = "static"\ncandidate_variants = ["v"]\n',
        "functions.f.experimentation: per-variant `weight` cannot be combined",
        id="weight-and-experimentation",
    ),
    pytest.param(
        BASE.replace('type = "dummy"', 'type = "aws_bedrock"\nmodel_id = "x"').replace('model_name = "good"\n', ""),
        "models.m.providers.p.region: `region` is required",
        id="unsupported-provider",
    ),
    pytest.param(BASE.replace('type = "dummy"', 'type = "openai"') + "", None, id="openai-provider-ok"),
    pytest.param(
        BASE + '[metrics.comment]\ntype = "boolean"\noptimize = "max"\nlevel = "inference"\n',
        "metrics.comment: metric name `comment` is reserved",
        id="reserved-metric",
    ),
    pytest.param(
        BASE.replace('model_name = "good"', 'model_name = "good"\napi_key_location = "ENV_VAR"'),
        "models.m.providers.p.api_key_location: invalid credential location `ENV_VAR`",
        id="bad-credential",
    ),
    pytest.param(
        BASE + '[functions.g]\ntype = "chat"\nsystem_schema = "s.json"\n[functions.g.variants.v]\n'
        'type = "chat_completion"\nmodel = "m"\n',
        "functions.g.system_schema: file not found",
        id="missing-schema-file",
    ),
    pytest.param(
        BASE + "[gateway.auth]\nenabled = true\n[gateway.observability]\nenabled = false\n",
        "gateway.auth.enabled: API keys are stored in ClickHouse: authentication needs",
        id="auth-not-silently-off",
    ),
    pytest.param(
        BASE + "[[rate_limiting.rules]]\nrequests_per_day = 10\npriority = 1\n",
        "rate_limiting.rules.0: unknown key `requests_per_day`",
        id="rate-limit-unknown-key",
    ),
    pytest.param(
        BASE + "[gateway.export.otlp.traces]\nenabled = true\n",
        "gateway.export.otlp.traces.enabled: trace export needs OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        id="otlp-without-an-endpoint",
    ),
]


@pytest.mark.parametrize("text, expected", BROKEN)
def test_broken_configs_name_file_and_key_path(tmp_path, text, expected):
    path = write(tmp_path, text)
    if expected is None:
        load_config(path)
        return
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}: {expected}" in str(caught.value)


def test_schema_without_matching_template_is_reported(tmp_path):
    write(tmp_path, '{"type": "object"}', "s.json")
    path = write(tmp_path, BASE.replace('type = "chat"', 'type = "chat"\nuser_schema = "s.json"'))
    with pytest.raises(
        ConfigError,
        match=r"functions\.f\.variants\.v: the function has a `user` schema, "
        r"so this variant needs a `user` template",
    ):
        load_config(path)


def test_invalid_json_schema_is_reported(tmp_path):
    write(tmp_path, '{"type": 12}', "s.json")
    path = write(tmp_path, BASE.replace('type = "chat"', 'type = "chat"\nuser_schema = "s.json"'))
    with pytest.raises(ConfigError, match="functions.f.user_schema: .* is not a valid JSON schema"):
        load_config(path)


def test_toml_syntax_error_names_the_file(tmp_path):
    path = write(tmp_path, "[models\n")
    with pytest.raises(ConfigError, match=f"Failed to parse config file {path}"):
        load_config(path)


def test_glob_merges_files_and_resolves_paths_relative_to_each_file(tmp_path):
    write(tmp_path, "Hi {{ name }}", "a/templates/system.minijinja")
    write(tmp_path, '{"type": "object", "properties": {"name": {"type": "string"}}}', "b/schema.json")
    write(tmp_path, BASE.split("[functions.f]")[0], "a/models.toml")
    write(
        tmp_path,
        """
        [functions.f]
        type = "chat"
        system_schema = "schema.json"
        """,
        "b/functions.toml",
    )
    write(
        tmp_path,
        """
        [functions.f.variants.v]
        type = "chat_completion"
        model = "m"
        system_template = "templates/system.minijinja"
        """,
        "a/variants.toml",
    )
    config = load_config(str(tmp_path / "**" / "*.toml"))
    function = config.functions["f"]
    assert function.system_schema.path == str(tmp_path / "b" / "schema.json")
    assert function.variants["v"].system_template.contents == "Hi {{ name }}"


def test_duplicate_definitions_across_files_are_errors(tmp_path):
    write(tmp_path, BASE, "one.toml")
    write(tmp_path, BASE, "two.toml")
    with pytest.raises(ConfigError, match=r"Duplicate definition of `models\.m\.routing`"):
        load_config(str(tmp_path / "*.toml"))


def test_error_in_second_file_names_that_file(tmp_path):
    write(tmp_path, BASE, "one.toml")
    second = write(tmp_path, '[metrics.m]\ntype = "boolean"\noptimize = "up"\nlevel = "inference"\n', "two.toml")
    with pytest.raises(ConfigError, match=f"{second}: metrics.m.optimize: Input should be 'max' or 'min'"):
        load_config(str(tmp_path / "*.toml"))


def test_no_files_matching_glob(tmp_path):
    with pytest.raises(ConfigError, match="No config files match"):
        load_config(str(tmp_path / "*.toml"))


def test_every_variant_type_and_experimentation_parses(tmp_path):
    write(tmp_path, "judge", "judge.txt")
    path = write(
        tmp_path,
        BASE
        + """
        [functions.f.variants.bon]
        type = "experimental_best_of_n_sampling"
        candidates = ["v", "v"]
        evaluator = { model = "m" }

        [functions.f.variants.mon]
        type = "experimental_mixture_of_n"
        candidates = ["v"]
        fuser = { model = "openai::gpt-4o-mini" }

        [functions.f.variants.dicl]
        type = "experimental_dynamic_in_context_learning"
        embedding_model = "openai::text-embedding-3-small"
        model = "m"
        k = 3
        max_distance = 0.5

        [functions.f.variants.fallback]
        type = "chat_completion"
        model = "m"

        [functions.j]
        type = "json"
        [functions.j.variants.cot]
        type = "experimental_chain_of_thought"
        model = "m"

        [functions.f.experimentation]
        type = "adaptive"
        candidate_variants = ["v", "bon"]
        fallback_variants = ["fallback"]
        metric = "ok"

        [functions.f.experimentation.namespaces.mobile]
        type = "static"
        candidate_variants = { v = 1.0 }

        [functions.f.evaluators.exact]
        type = "exact_match"

        [functions.f.evaluators.judge]
        type = "llm_judge"
        output_type = "boolean"
        optimize = "max"
        [functions.f.evaluators.judge.variants.j]
        type = "chat_completion"
        model = "m"
        system_instructions = "judge.txt"
        json_mode = "strict"
        active = true

        [metrics.ok]
        type = "boolean"
        optimize = "max"
        level = "episode"

        [embedding_models.small]
        routing = ["openai"]
        [embedding_models.small.providers.openai]
        type = "openai"
        model_name = "text-embedding-3-small"

        [object_storage]
        type = "filesystem"
        path = "/tmp/files"

        [gateway]
        observability.enabled = false
        observability.batch_writes = { enabled = true, flush_interval_ms = 50 }
        export.otlp.traces.enabled = false
        """,
    )
    config = load_config(path)
    variants = config.functions["f"].variants
    assert isinstance(variants["v"], ChatCompletionVariantConfig)
    assert isinstance(variants["bon"], BestOfNVariantConfig)
    assert isinstance(variants["mon"], MixtureOfNVariantConfig)
    assert isinstance(variants["dicl"], DiclVariantConfig)
    assert isinstance(config.functions["j"].variants["cot"], ChainOfThoughtVariantConfig)
    experimentation = config.functions["f"].experimentation
    assert isinstance(experimentation, AdaptiveExperimentation)
    assert isinstance(experimentation.namespaces["mobile"], StaticExperimentation)
    assert config.functions["f"].evaluators["judge"].variants["j"].system_instructions.contents == "judge"
    assert config.gateway.observability.batch_writes.flush_interval_ms == 50


@pytest.mark.parametrize(
    "path",
    [
        "config/quickstart/tensorzero.toml",
        "config/examples/openai/tensorzero.toml",
        "config/examples/anthropic/tensorzero.toml",
    ],
)
def test_shipped_configs_load(path):
    config = load_config(ROOT / path)
    assert config.functions


def test_credential_locations(tmp_path, monkeypatch):
    key_file = write(tmp_path, "from-file\n", "key.txt")
    monkeypatch.setenv("TZ_TEST_KEY", "from-env")
    monkeypatch.delenv("TZ_TEST_MISSING", raising=False)
    assert resolve_credential("env::TZ_TEST_KEY", {}, "openai").get_secret_value() == "from-env"
    assert resolve_credential(f"path::{key_file}", {}, "openai").get_secret_value() == "from-file"
    assert resolve_credential("dynamic::k", {"k": "from-request"}, "openai").get_secret_value() == "from-request"
    assert resolve_credential("none", {}, "openai") is None
    with pytest.raises(ApiKeyMissing, match="API key missing for provider openai"):
        resolve_credential("dynamic::k", {}, "openai")
    pair = CredentialWithFallback(default="env::TZ_TEST_MISSING", fallback="env::TZ_TEST_KEY")
    assert resolve_credential(pair, {}, "openai").get_secret_value() == "from-env"
    assert "from-env" not in repr(resolve_credential(pair, {}, "openai"))


def test_tests_copy_only_the_configs_the_repository_has(tmp_path):
    """A file a user drops into a config folder (a walkthrough's snippet) never reaches the
    configs the tests load."""
    from tests.conftest import CONFIG_DIR, copy_tracked

    stray = CONFIG_DIR / "zz_users_own_snippet.toml"
    stray.write_text("[functions.broken]\n")
    try:
        copy_tracked(CONFIG_DIR, tmp_path / "copy")
    finally:
        stray.unlink()
    assert (tmp_path / "copy" / "tensorzero.toml").is_file()
    assert not (tmp_path / "copy" / stray.name).exists()
