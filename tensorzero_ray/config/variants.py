"""Variant configs (spec §3.7): every type parses; the router says which ones run."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field

from tensorzero_ray.config.files import PathRef, Template
from tensorzero_ray.config.models import Timeouts
from tensorzero_ray.types import ExtraBodyEntry, ExtraHeaderEntry, JsonMode, SamplingParams

ROLE_TEMPLATES = ("system", "user", "assistant")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Retries(Strict):
    num_retries: int = Field(default=0, ge=0)
    max_delay_s: float = Field(default=10.0, ge=0)


class InputWrappers(Strict):
    system: Template | None = None
    user: Template | None = None
    assistant: Template | None = None


class ChatCompletionSettings(SamplingParams):
    """What a chat completion needs: a model, templates and sampling parameters. Shared by the
    `chat_completion` variant and the inner blocks of the meta-variants."""

    model: str
    templates: dict[str, PathRef] = Field(default_factory=dict)
    system_template: Template | None = None
    user_template: Template | None = None
    assistant_template: Template | None = None
    input_wrappers: InputWrappers | None = None
    json_mode: JsonMode | None = None
    retries: Retries = Field(default_factory=Retries)
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)

    def template_texts(self) -> dict[str, str]:
        """Every template by name; the legacy role keys and input wrappers fold in."""
        texts = {name: ref.path.contents for name, ref in self.templates.items()}
        for role in ROLE_TEMPLATES:
            legacy = getattr(self, f"{role}_template")
            if legacy is not None:
                texts[role] = legacy.contents
            wrapper = getattr(self.input_wrappers, role, None) if self.input_wrappers else None
            if wrapper is not None and role not in texts:
                texts[role] = wrapper.contents
        return texts


class VariantBase(Strict):
    weight: float | None = Field(default=None, ge=0)
    namespace: str | None = None


class ChatCompletionVariantConfig(ChatCompletionSettings, VariantBase):
    type: Literal["chat_completion"]


class BestOfNVariantConfig(VariantBase):
    type: Literal["experimental_best_of_n_sampling", "experimental_best_of_n"]
    candidates: list[str] = Field(min_length=1)
    evaluator: ChatCompletionSettings
    timeout_s: float | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)


class MixtureOfNVariantConfig(VariantBase):
    type: Literal["experimental_mixture_of_n"]
    candidates: list[str] = Field(min_length=1)
    fuser: ChatCompletionSettings
    timeout_s: float | None = None
    timeouts: Timeouts = Field(default_factory=Timeouts)


class DiclVariantConfig(SamplingParams, VariantBase):
    type: Literal["experimental_dynamic_in_context_learning"]
    embedding_model: str
    k: int = Field(ge=0)
    model: str
    max_distance: float | None = Field(default=None, ge=0)
    system_instructions: Template | None = None
    json_mode: JsonMode | None = None
    retries: Retries = Field(default_factory=Retries)
    extra_body: list[ExtraBodyEntry] = Field(default_factory=list)
    extra_headers: list[ExtraHeaderEntry] = Field(default_factory=list)
    timeouts: Timeouts = Field(default_factory=Timeouts)


class ChainOfThoughtVariantConfig(ChatCompletionSettings, VariantBase):
    type: Literal["experimental_chain_of_thought"]


VariantConfig = Annotated[
    Union[
        ChatCompletionVariantConfig,
        BestOfNVariantConfig,
        MixtureOfNVariantConfig,
        DiclVariantConfig,
        ChainOfThoughtVariantConfig,
    ],
    Field(discriminator="type"),
]


def variant_models(variant: Any) -> list[tuple[tuple[str, ...], str]]:
    """(key path inside the variant, model name) for every model a variant calls."""
    if isinstance(variant, (ChatCompletionVariantConfig, ChainOfThoughtVariantConfig, DiclVariantConfig)):
        return [(("model",), variant.model)]
    if isinstance(variant, BestOfNVariantConfig):
        return [(("evaluator", "model"), variant.evaluator.model)]
    if isinstance(variant, MixtureOfNVariantConfig):
        return [(("fuser", "model"), variant.fuser.model)]
    return []
