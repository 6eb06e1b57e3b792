"""Sentences as data (issue 12; Bowman et al. 2016, "Generating Sentences from a Continuous
Space", https://arxiv.org/abs/1511.06349): a text file of one sentence per line becomes token
ids with a vocabulary built from the training sentences.

A text split is an ordinary `Split` whose x is int64 (N, T): each sentence's word ids, then
`<eos>`, right-padded with `<pad>`. The special ids are fixed (PAD 0, UNK 1, BOS 2, EOS 3, words
from 4), so `lengths(x)` counts the tokens a model scores, `<eos>` included. `bucket_batches`
groups sentences of similar length so that a batch trimmed to its longest sentence carries
little padding.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from vaelab.data.files import TEST_FRACTION, TEST_SEED
from vaelab.data.splits import Data, Split
from vaelab.errors import VaelabError, VaelabWarning

PAD, UNK, BOS, EOS = 0, 1, 2, 3
SPECIALS = ("<pad>", "<unk>", "<bos>", "<eos>")


@dataclass
class Vocabulary:
    """Words and their ids: the four SPECIALS first, then the words in order of frequency
    (ties in order of first appearance)."""

    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if tuple(self.words[:len(SPECIALS)]) != SPECIALS:
            raise VaelabError(f"vocabulary: must start with {', '.join(SPECIALS)}")
        self.index = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def build(cls, sentences: Sequence[Sequence[str]], max_size: int | None = None,
              min_count: int = 1) -> Vocabulary:
        """From training sentences: words seen at least min_count times, the max_size most
        frequent (max_size counts the specials too; None: no limit)."""
        counts = Counter(w for s in sentences for w in s if w not in SPECIALS)
        kept = [w for w, c in counts.most_common() if c >= min_count]  # stable: first seen first
        if max_size is not None:
            kept = kept[:max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *kept])

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, words: Sequence[str]) -> list[int]:
        return [self.index.get(w, UNK) for w in words]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """Words up to the first <eos>, without <pad> and <bos>."""
        out = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.words[i])
        return out

    def unknown(self, words: Sequence[str]) -> list[str]:
        """The words of a sentence that this vocabulary maps to <unk>."""
        return [w for w in words if w not in self.index]

    def to_json(self) -> str:
        return json.dumps({"words": self.words})

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls(list(json.loads(text)["words"]))


@dataclass
class TextData(Data):
    """A `Data` of sentences: x holds token ids (see the module docstring)."""

    vocab: Vocabulary = field(default_factory=lambda: Vocabulary(list(SPECIALS)))
    max_length: int = 0


def read_sentences(path: Path) -> list[list[str]]:
    """The whitespace-split words of each non-blank line of a UTF-8 text file."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise VaelabError(f"{path}: cannot read it ({e.strerror or e})") from None
    if b"\0" in raw:
        offset = raw.index(b"\0")
        line = raw[:offset].count(b"\n") + 1
        raise VaelabError(f"{path}: binary data (a NUL byte at offset {offset}, line {line}); "
                          f"vaelab reads text files of one sentence per line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise VaelabError(f"{path}: not UTF-8 text (byte offset {e.start}, line {line}); "
                          f"convert it, e.g. iconv -f latin1 -t utf-8") from None
    sentences = [line.split() for line in text.splitlines() if line.strip()]
    if not sentences:
        raise VaelabError(f"{path}: no sentences (the file is empty or blank); vaelab reads "
                          f"one sentence per line")
    return sentences


def to_ids(sentences: Sequence[Sequence[str]], vocab: Vocabulary, max_length: int,
           where: str = "text") -> Tensor:
    """Token ids (N, T) with T the longest sentence plus <eos>, at most max_length: a longer
    sentence keeps its first max_length - 1 words (one VaelabWarning counts them)."""
    if max_length < 2:
        raise VaelabError(f"data.max_length {max_length}: must be at least 2 (a word and <eos>)")
    cut = sum(len(s) > max_length - 1 for s in sentences)
    if cut:
        warnings.warn(f"{where}: {cut} of {len(sentences)} sentences are longer than "
                      f"max_length - 1 = {max_length - 1} words and were truncated",
                      VaelabWarning, stacklevel=2)
    rows = [vocab.encode(s[:max_length - 1]) + [EOS] for s in sentences]
    x = torch.full((len(rows), max(map(len, rows))), PAD, dtype=torch.int64)
    for i, row in enumerate(rows):
        x[i, :len(row)] = torch.tensor(row)
    return x


def load_text(path: Path, max_length: int = 64, max_vocab: int | None = 20000,
              min_count: int = 1) -> TextData:
    """A text file of one sentence per line as TextData: a fixed TEST_FRACTION of the
    sentences held out as the test split (as for other user data), the vocabulary built from
    the rest."""
    sentences = read_sentences(path)
    n_test = max(1, round(len(sentences) * TEST_FRACTION))
    if len(sentences) - n_test < 1:
        raise VaelabError(f"{path}: holds {len(sentences)} sentence(s); vaelab needs at least 2 "
                          f"to split off a test set")
    perm = torch.randperm(len(sentences), generator=torch.Generator().manual_seed(TEST_SEED))
    train = [sentences[i] for i in perm[n_test:].tolist()]
    test = [sentences[i] for i in perm[:n_test].tolist()]
    vocab = Vocabulary.build(train, max_size=max_vocab, min_count=min_count)
    return TextData(name=path.stem, train=Split(to_ids(train, vocab, max_length, str(path))),
                    test=Split(to_ids(test, vocab, max_length, str(path))), value_range="tokens",
                    levels=None, vocab=vocab, max_length=max_length)


def lengths(x: Tensor) -> Tensor:
    """Tokens per sentence (N,), <eos> included, of token ids x (N, T)."""
    return (x != PAD).sum(-1)


def bucket_batches(sizes: Tensor, batch_size: int, generator: torch.Generator | None = None,
                   chunk: int = 50) -> list[Tensor]:
    """An epoch's batches of example indices, grouped by length: shuffle, cut into chunks of
    `chunk` batches, sort each chunk by `sizes` (N,), cut it into batches, shuffle the batches.
    Every index appears exactly once."""
    order = torch.randperm(len(sizes), generator=generator)
    batches: list[Tensor] = []
    step = batch_size * chunk
    for start in range(0, len(order), step):
        part = order[start:start + step]
        part = part[torch.argsort(sizes[part], stable=True)]
        batches += list(part.split(batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
