"""Build a tiny random-weight Llama checkpoint with a Llama-3-style tokenizer, offline.

Runs inside .venv-vllm (it needs torch, transformers and tokenizers):

    .venv-vllm/bin/python -m selfhost.local.tiny_model OUT_DIR

The weights are random, so the text is gibberish; the architecture, the special tokens (`<|eot_id|>`
as end of turn), the chat template and the serving path are the real Llama 3 ones. Deterministic:
the same seed and corpus give the same files. About 3 MB.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

SPECIAL_TOKENS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ (message['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Shapes from ../shared/recipes/offline-testing.md: the CPU attention backend needs head_dim in {32, 64, ...}.
CONFIG = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 32,
    "vocab_size": 4096,
    "max_position_embeddings": 2048,
    "rope_theta": 500000.0,
    "tie_word_embeddings": False,
}
MARKER = "selfhost-tiny-llama.json"  # written last: its presence means the build finished

_WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "it",
    "an",
    "were",
    "are",
    "which",
    "this",
    "be",
    "or",
    "has",
    "had",
    "not",
    "but",
    "first",
    "one",
    "their",
    "its",
    "new",
    "after",
    "who",
    "they",
    "have",
    "two",
    "been",
    "other",
    "also",
    "more",
    "all",
    "some",
    "time",
    "year",
    "city",
    "when",
    "school",
    "there",
    "over",
    "would",
    "into",
    "what",
    "world",
    "most",
    "many",
    "work",
    "cost",
    "price",
    "model",
    "token",
    "server",
    "request",
    "latency",
    "throughput",
    "cloud",
    "deploy",
    "budget",
    "spend",
    "month",
    "hour",
    "week",
    "day",
    "answer",
    "question",
    "hello",
    "data",
    "system",
    "large",
    "small",
    "fast",
    "slow",
    "good",
    "best",
    "people",
    "state",
    "company",
    "number",
    "part",
]


def corpus(lines: int = 4000, seed: int = 0) -> list[str]:
    """Pseudo-English lines from a fixed word list (no files or downloads needed)."""
    import random

    rng = random.Random(seed)
    out = []
    for _ in range(lines):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(5, 20))]
        out.append(" ".join(words).capitalize() + rng.choice(".?!,") + f" {rng.randint(0, 9999)}")
    return out


def build_tokenizer(out: Path, vocab_size: int) -> int:
    """Train a byte-level BPE (every byte encodable) and save it as a Llama-3-style fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>",
        eos_token="<|eot_id|>",
        pad_token="<|end_of_text|>",
        model_max_length=CONFIG["max_position_embeddings"],
    )
    fast.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[2:4]})
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out)
    return len(fast)


def build(out_dir: str | Path, seed: int = 0) -> Path:
    """Write config, random weights, tokenizer and generation config into out_dir."""
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    n_tokens = build_tokenizer(out, int(CONFIG["vocab_size"]))
    tok = AutoTokenizer.from_pretrained(out)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        **CONFIG,
        bos_token_id=ids["<|begin_of_text|>"],
        eos_token_id=ids["<|eot_id|>"],
        pad_token_id=ids["<|end_of_text|>"],
        torch_dtype="bfloat16",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids["<|begin_of_text|>"], eos_token_id=[ids["<|eot_id|>"], ids["<|end_of_text|>"]]
    ).save_pretrained(out)
    (out / MARKER).write_text(
        json.dumps({"tokenizer_size": n_tokens, "special_tokens": ids, "seed": seed, "config": CONFIG}, indent=1)
    )
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m selfhost.local.tiny_model OUT_DIR")
    print(build(sys.argv[1]))
