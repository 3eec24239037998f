"""A causal language model run with transformers: chat templates, a decoding loop that
streams text as it forms, stop sequences, context limits and token counts.

The loop is ours rather than `generate()` so that streaming, stop sequences and cancellation
are one code path on CPU and GPU alike; one request decodes at a time per replica (Serve
scales replicas)."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorzero_ray.errors import PromptTooLong
from tensorzero_ray.local_models.protocol import GenerationDelta, GenerationRequest, GenerationResult

# Chat template for tokenizers that have none: plain role-tagged turns.
FALLBACK_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


class ModelLoadError(RuntimeError):
    pass


def load_engine(
    model_name: str,
    *,
    dtype: str = "auto",
    device: str = "auto",
    max_context_tokens: int | None = None,
    where: str = "model_name",
) -> TransformersEngine:
    """Load a model directory or hub name; failures name the config key that pointed here."""
    try:
        return TransformersEngine(model_name, dtype=dtype, device=device, max_context_tokens=max_context_tokens)
    except Exception as exc:  # noqa: BLE001 - any loading failure becomes one message with the key
        raise ModelLoadError(f"{where}: cannot load model `{model_name}`: {exc}") from exc


class TransformersEngine:
    def __init__(
        self, model_name: str, *, dtype: str = "auto", device: str = "auto", max_context_tokens: int | None = None
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self._torch = torch
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        self.device = device
        self.dtype = dtype
        self.name = Path(model_name).name or model_name
        self.tokenizer = AutoTokenizer.from_pretrained(model_name)
        self.model = AutoModelForCausalLM.from_pretrained(model_name, dtype=getattr(torch, dtype)).to(device).eval()
        self.context_tokens = max_context_tokens or _context_tokens(self.model.config, self.tokenizer)
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        self.defaults = self.model.generation_config
        # transformers 5.2x renamed the forward's `past_key_values` to `cache`.
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        self._lock = threading.Lock()

    def render(self, request: GenerationRequest) -> str:
        template = None if self.tokenizer.chat_template else FALLBACK_TEMPLATE
        kwargs: dict[str, Any] = {"tokenize": False, "add_generation_prompt": True, "chat_template": template}
        if request.tools:
            kwargs["tools"] = request.tools
        return self.tokenizer.apply_chat_template(request.messages, **kwargs)

    def generate(
        self,
        request: GenerationRequest,
        on_delta: Callable[[GenerationDelta], None] | None = None,
        cancelled: threading.Event | None = None,
    ) -> GenerationResult:
        """Blocking; run it off the event loop. `on_delta` receives text as soon as it is
        certain not to be part of a stop sequence."""
        prompt = self.render(request)
        input_ids = self.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        prompt_tokens = input_ids.shape[1]
        room = self.context_tokens - prompt_tokens
        if room <= 0:
            raise PromptTooLong(
                f"The prompt has {prompt_tokens} tokens; model `{self.name}` accepts at most "
                f"{self.context_tokens} tokens of context"
            )
        with self._lock:
            return self._decode(request, prompt, input_ids, min(request.max_tokens, room), on_delta, cancelled)

    def _decode(self, request, prompt, input_ids, max_new, on_delta, cancelled) -> GenerationResult:
        torch = self._torch
        text = _TextBuilder(self.tokenizer, request.stop)
        generator = torch.Generator(device=self.device)
        if request.seed is not None:
            generator.manual_seed(request.seed)
        else:
            generator.seed()
        sampler = _Sampler(request, self.defaults, generator)
        finish = "length"
        with torch.inference_mode():
            ids = input_ids.to(self.device)
            past = None
            for _ in range(max_new):
                if cancelled is not None and cancelled.is_set():
                    break
                out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: past})
                past = getattr(out, self._cache_arg)
                token = sampler.pick(out.logits[0, -1].float(), text.token_ids)
                if token in self.eos_ids:
                    finish = "stop"
                    break
                stopped = text.add(token)
                if on_delta is not None:
                    delta = text.take_ready()
                    if delta:
                        on_delta(GenerationDelta(text=delta))
                if stopped:
                    finish = "stop_sequence"
                    break
                ids = torch.tensor([[token]], device=self.device)
        tail = text.take_rest()
        if on_delta is not None and tail:
            on_delta(GenerationDelta(text=tail))
        return GenerationResult(
            text=text.final,
            prompt=prompt,
            input_tokens=input_ids.shape[1],
            output_tokens=len(text.token_ids),
            finish_reason=finish,
        )


class _Sampler:
    """Greedy unless a temperature above zero is asked for (request, then the model's own
    generation config)."""

    def __init__(self, request: GenerationRequest, defaults: Any, generator: Any):
        import torch

        self._torch = torch
        temperature = request.temperature
        if temperature is None and getattr(defaults, "do_sample", False):
            temperature = getattr(defaults, "temperature", None)
        self.temperature = temperature or 0.0
        top_p = request.top_p if request.top_p is not None else getattr(defaults, "top_p", None)
        self.top_p = top_p if top_p is not None and 0 < top_p < 1 else None
        self.repetition_penalty = request.repetition_penalty
        self.generator = generator

    def pick(self, logits, previous: list[int]) -> int:
        torch = self._torch
        if self.repetition_penalty and previous:
            seen = torch.tensor(sorted(set(previous)), device=logits.device)
            values = logits[seen]
            logits[seen] = torch.where(values > 0, values / self.repetition_penalty, values * self.repetition_penalty)
        if self.temperature <= 0:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / self.temperature, dim=-1)
        if self.top_p is not None:
            ordered, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(ordered, dim=-1) - ordered < self.top_p
            probs = torch.zeros_like(probs).scatter(0, order[keep], ordered[keep])
        return int(torch.multinomial(probs, 1, generator=self.generator))


class _TextBuilder:
    """Decodes the generated tokens as they come, finds stop sequences, and releases text
    only once no stop sequence or half-decoded character can still change it. Each token
    decodes a short window (the last settled tokens onward), not the whole answer again."""

    def __init__(self, tokenizer: Any, stop: list[str]):
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._longest = max((len(s) for s in self._stop), default=1)
        self.token_ids: list[int] = []
        self.final = ""
        self._window = 0  # where the decode window starts
        self._settled = 0  # tokens before this are in `final`
        self._released = 0
        self._stopped = False

    def add(self, token: int) -> bool:
        self.token_ids.append(token)
        settled = self._decode(self._window, self._settled)
        current = self._decode(self._window, len(self.token_ids))
        if not current.endswith("\ufffd"):  # a character still missing bytes waits for the next token
            self._append(current[len(settled) :])
            self._window, self._settled = self._settled, len(self.token_ids)
        return self._stopped

    def _decode(self, start: int, end: int) -> str:
        return self._tokenizer.decode(self.token_ids[start:end], skip_special_tokens=True)

    def _append(self, new: str) -> None:
        text = self.final + new
        for stop in self._stop:
            at = text.find(stop, max(0, len(self.final) - self._longest))
            if at >= 0:
                text = text[:at]
                self._stopped = True
        self.final = text

    def take_ready(self) -> str:
        end = len(self.final) if self._stopped else len(self.final) - (self._longest - 1)
        if end <= self._released:
            return ""
        piece = self.final[self._released : end]
        self._released = end
        return piece

    def take_rest(self) -> str:
        if not self._stopped and self._settled < len(self.token_ids):
            settled = self._decode(self._window, self._settled)
            self._append(self._decode(self._window, len(self.token_ids))[len(settled) :])
        piece = self.final[self._released :]
        self._released = len(self.final)
        return piece


def _context_tokens(config: Any, tokenizer: Any) -> int:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10_000_000 else 2048
