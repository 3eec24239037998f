"""The config snippet that serves a fine-tuned model as a new variant of its function, in
tensorzero.toml's own format, ready to paste or to write into a config file."""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

from tensorzero_ray.config.functions import StaticExperimentation
from tensorzero_ray.config.variants import ChatCompletionVariantConfig


def _toml_string(value: str) -> str:
    return json.dumps(value)


def snippet_home(config_pattern: str, write_config: Path | None) -> Path:
    """The folder a snippet's paths are written relative to: the config file it is appended
    to, else the one it was made from. Paths in a config resolve relative to the file that
    declares them (spec §3.1), so the snippet works wherever that folder is, on any node."""
    if write_config is not None:
        return write_config.resolve().parent
    matches = sorted(glob.glob(config_pattern))
    return Path(matches[0] if matches else config_pattern).resolve().parent


def relative_path(path: str | Path, home: Path) -> str:
    return os.path.relpath(Path(path).resolve(), home)


def variant_snippet(
    *,
    function_name: str,
    function,
    variant_name: str,
    model_name: str,
    template: ChatCompletionVariantConfig | None,
    weight: float,
    home: Path,
    sampling: dict[str, float | int] | None = None,
) -> str:
    """`[functions.F.variants.V]` with the template variant's templates, so the new model sees
    prompts rendered the way its training data was; `sampling`: parameters to keep."""
    lines = [
        f"[functions.{function_name}.variants.{variant_name}]",
        'type = "chat_completion"',
        f"model = {_toml_string(model_name)}",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (sampling or {}).items()]
    if template is not None:
        for role in ("system", "user", "assistant"):
            text_file = getattr(template, f"{role}_template")
            if text_file is not None:
                lines.append(f"{role}_template = {_toml_string(relative_path(text_file.path, home))}")
        for name, ref in template.templates.items():
            lines.append(f"templates.{name}.path = {_toml_string(relative_path(ref.path.path, home))}")
        if template.json_mode is not None:
            lines.append(f"json_mode = {_toml_string(template.json_mode)}")
    experimentation = function.experimentation
    if isinstance(experimentation, StaticExperimentation) and isinstance(experimentation.candidate_variants, dict):
        shares = {**experimentation.candidate_variants, variant_name: weight}
        listed = ", ".join(f"{name} = {share}" for name, share in shares.items())
        lines.append(
            f"# {function_name} samples from [functions.{function_name}.experimentation]: to send it traffic, set\n"
            f"# candidate_variants = {{ {listed} }}"
        )
    elif experimentation is None:
        lines.append(f"weight = {weight}")
    return "\n".join(lines) + "\n"


def ray_serve_model_snippet(
    model_name: str, model_dir: Path, home: Path, actor_options: dict[str, float] | None = None
) -> str:
    snippet = (
        f"[models.{_toml_key(model_name)}]\n"
        'routing = ["ray_serve"]\n\n'
        f"[models.{_toml_key(model_name)}.providers.ray_serve]\n"
        'type = "ray_serve"\n'
        f"model_name = {_toml_string(relative_path(model_dir, home))}\n"
    )
    if actor_options:
        options = ", ".join(f"{key} = {value}" for key, value in actor_options.items())
        snippet += f"ray_actor_options = {{ {options} }}\n"
    return snippet


def openai_model_snippet(model_name: str, fine_tuned_model: str) -> str:
    return (
        f"[models.{_toml_key(model_name)}]\n"
        'routing = ["openai"]\n\n'
        f"[models.{_toml_key(model_name)}.providers.openai]\n"
        'type = "openai"\n'
        f"model_name = {_toml_string(fine_tuned_model)}\n"
    )


def _toml_key(name: str) -> str:
    return name if name.replace("_", "").replace("-", "").isalnum() else _toml_string(name)


def write_snippet(path: Path, snippet: str) -> None:
    """Append to a config file (created if missing), loaded beside the others by a glob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    separator = "\n" if existing and not existing.endswith("\n\n") else ""
    path.write_text(existing + separator + snippet)
