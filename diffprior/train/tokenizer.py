"""Build a small CLIP byte-level BPE tokenizer for a closed caption vocabulary.

The result is saved in the layout of Stable Diffusion's ``tokenizer/`` folder
(``vocab.json``, ``merges.txt``, ``special_tokens_map.json``, ``tokenizer_config.json``) and
loads with transformers' ``CLIPTokenizer``. The vocabulary holds the 256 byte symbols (bare and
with the end-of-word marker ``</w>``), one token per caption word, and the two special tokens;
merges are added until every caption word encodes to exactly one token, so unseen words still
tokenize (into bytes) instead of failing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2 reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def _bpe(symbols: list[str], ranks: dict[tuple, int]) -> list[str]:
    word = list(symbols)
    while len(word) > 1:
        pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(word, word[1:]))]
        best, i = min(pairs)
        if best == float("inf"):
            break
        a, b = word[i], word[i + 1]
        merged, j = [], 0
        while j < len(word):
            if j < len(word) - 1 and word[j] == a and word[j + 1] == b:
                merged.append(a + b)
                j += 2
            else:
                merged.append(word[j])
                j += 1
        word = merged
    return word


def word_symbols(word: str) -> list[str]:
    """Byte symbols of a lower-case word, the last one carrying ``</w>``."""
    enc = bytes_to_unicode()
    chars = [enc[b] for b in word.encode("utf-8")]
    return chars[:-1] + [chars[-1] + "</w>"]


def build_vocab(words: Iterable[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return ``(vocab, merges)`` such that each word is one token."""
    words = sorted({w.lower() for w in words if w})
    enc = bytes_to_unicode()
    base = list(enc.values())
    vocab_list = base + [c + "</w>" for c in base]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple, int] = {}
    for w in words:
        while True:
            pieces = _bpe(word_symbols(w), ranks)
            if len(pieces) == 1:
                break
            pair = (pieces[0], pieces[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            if pair[0] + pair[1] not in vocab_list:
                vocab_list.append(pair[0] + pair[1])
    vocab_list += [BOS, EOS]
    return {tok: i for i, tok in enumerate(vocab_list)}, merges


def save_tokenizer(path: str | os.PathLike, words: Iterable[str], max_length: int) -> dict[str, int]:
    """Write a CLIPTokenizer folder for ``words`` and return its vocabulary."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab, merges = build_vocab(words)
    (path / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (path / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    cfg = dict(special, model_max_length=max_length, do_lower_case=True, tokenizer_class="CLIPTokenizer",
               add_prefix_space=False, errors="replace")
    (path / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    return vocab
