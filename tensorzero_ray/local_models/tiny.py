"""Build a tiny chat model on disk, offline: a byte-level BPE tokenizer trained on the spot,
a 2-layer Llama-style transformer, and a chat template that renders tools. For tests, demos
and benchmarks (`python -m tensorzero_ray.local_models.tiny DIR`); its answers are noise
unless `train_steps` teaches it the given replies."""

from __future__ import annotations

import argparse
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>", "<|tool|>", "<|end|>"]

CHAT_TEMPLATE = (
    "{% if tools %}<|system|>\n"
    'To call a tool, answer <tool_call>{"name": NAME, "arguments": {...}}</tool_call>. Tools:'
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}<|end|>\n{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>\n"
    "{% if message['content'] %}{{ message['content'] }}{% endif %}"
    "{% for call in message.get('tool_calls') or [] %}<tool_call>"
    "{{ {'name': call['function']['name'], 'arguments': call['function']['arguments']} | tojson }}"
    "</tool_call>{% endfor %}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "Hello! How can I help you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Ray Serve scales models across a cluster of machines.",
    "The weather in Paris is sunny with a light breeze.",
    '{"answer": "Hello", "confidence": 0.9, "items": [1, 2, 3]}',
    "Tools can be called with a name and JSON arguments.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000; punctuation: , . ; : ! ? ' \" ( ) [ ] { } < > / | - _ =",
]


def build_tiny_model(
    path: str | Path,
    *,
    vocab_size: int = 512,
    hidden_size: int = 64,
    layers: int = 2,
    heads: int = 4,
    context_tokens: int = 512,
    seed: int = 0,
    train_on: list[tuple[str, str]] | None = None,
    train_steps: int = 0,
) -> Path:
    """Write the model and tokenizer to `path` and return it. With `train_on` (user message,
    reply) pairs and `train_steps`, the model learns to give those replies."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    texts = CORPUS + [text for pair in train_on or [] for text in pair]
    bpe.train_from_iterator(texts * 4, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        pad_token="<pad>",
        unk_token="<unk>",
        eos_token="<|end|>",
        bos_token=None,
        model_max_length=context_tokens,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context_tokens,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    if train_on and train_steps:
        _teach(model, tokenizer, train_on, train_steps)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _teach(model, tokenizer, pairs: list[tuple[str, str]], steps: int) -> None:
    """Plain causal-LM training on the rendered chats, loss on the replies only."""
    import torch

    rows = []
    for user, reply in pairs:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
        reply_ids = tokenizer(reply + "<|end|>", add_special_tokens=False).input_ids
        rows.append((prompt_ids + reply_ids, [-100] * len(prompt_ids) + reply_ids))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in rows])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in rows])
    mask = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("--train-steps", type=int, default=0, help="teach it to greet (a few hundred steps)")
    args = parser.parse_args()
    pairs = [("Hello", "Hello! How can I help you today?")] if args.train_steps else None
    print(build_tiny_model(args.path, train_on=pairs, train_steps=args.train_steps))


if __name__ == "__main__":
    main()
