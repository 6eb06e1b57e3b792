"""Sentences as data (issue 12): the vocabulary, token ids, clear errors, length buckets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from vaelab.data.text import (
    BOS,
    EOS,
    PAD,
    SPECIALS,
    UNK,
    Vocabulary,
    bucket_batches,
    lengths,
    load_text,
    read_sentences,
    to_ids,
)
from vaelab.errors import VaelabError, VaelabWarning


def test_the_vocabulary_keeps_frequent_words_and_round_trips() -> None:
    sentences = [["the", "cat", "sat"], ["the", "dog", "sat"], ["a", "cat"]]
    vocab = Vocabulary.build(sentences, min_count=2)
    assert vocab.words == [*SPECIALS, "the", "cat", "sat"]  # counts 2, 2, 2: first seen first
    assert Vocabulary.build(sentences, max_size=5).words == [*SPECIALS, "the"]
    assert vocab.encode(["the", "dog"]) == [4, UNK]
    assert vocab.unknown(["the", "dog", "a"]) == ["dog", "a"]
    assert vocab.decode([BOS, 4, 5, EOS, 6, PAD]) == ["the", "cat"]
    again = Vocabulary.from_json(vocab.to_json())
    assert again.words == vocab.words and again.index == vocab.index
    with pytest.raises(VaelabError, match="must start with"):
        Vocabulary(["the", "cat"])


def test_sentences_become_ids_with_eos_and_padding_and_long_ones_are_counted() -> None:
    vocab = Vocabulary.build([["a", "b", "c"]])
    with pytest.warns(VaelabWarning, match="1 of 2 sentences are longer"):
        x = to_ids([["a", "b", "c"], ["b"]], vocab, max_length=3)
    a, b, c = vocab.encode(["a", "b", "c"])
    assert x.tolist() == [[a, b, EOS], [b, EOS, PAD]]  # "c" cut so that <eos> fits
    assert lengths(x).tolist() == [3, 2]
    assert x.dtype == torch.int64
    with pytest.raises(VaelabError, match="at least 2"):
        to_ids([["a"]], vocab, max_length=1)


def test_a_text_file_splits_and_builds_its_vocabulary_from_train_only(tmp_path: Path) -> None:
    lines = [f"w{i} common w{i % 7}" for i in range(50)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines[:25]) + "\n\n   \n" + "\n".join(lines[25:]) + "\n")
    data = load_text(path, max_length=8)
    assert len(data.train) + len(data.test) == 50 and len(data.test) == 5
    train_words = {w for row in data.train.x.tolist() for w in data.vocab.decode(row)}
    assert set(data.vocab.words[len(SPECIALS):]) == train_words  # nothing from the test split
    test_ids = data.test.x[data.test.x != PAD]
    assert (test_ids == UNK).any()  # w_i of a test sentence was never seen in training
    assert data.vocab.words[4] == "common" and data.value_range == "tokens"
    again = load_text(path, max_length=8)  # the split does not move
    assert torch.equal(again.test.x, data.test.x)


@pytest.mark.parametrize(("content", "message"), [
    (b"", "no sentences"),
    (b"\n  \n\n", "no sentences"),
    (b"a fine line\nbad \xff byte\n", "not UTF-8 text \\(byte offset 16, line 2\\)"),
    (b"text\n\x00\x01\x02", "binary data \\(a NUL byte at offset 5, line 2\\)"),
])
def test_bad_text_files_are_one_line_errors(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(content)
    with pytest.raises(VaelabError, match=message):
        read_sentences(path)
    with pytest.raises(VaelabError, match="cannot read"):
        read_sentences(tmp_path / "missing.txt")


def test_length_buckets_cover_every_sentence_once_and_cut_padding() -> None:
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(1, 60, (5000,), generator=gen)
    batches = bucket_batches(sizes, 32, torch.Generator().manual_seed(1))
    assert torch.equal(torch.cat(batches).sort().values, torch.arange(5000))
    assert sorted(len(b) for b in batches)[:2] == [8, 32]  # 5000 = 156 x 32 + 8: one short batch

    def padding(groups: list[torch.Tensor]) -> int:
        return sum(int(sizes[g].max() * len(g) - sizes[g].sum()) for g in groups)

    random = list(torch.randperm(5000, generator=gen).split(32))
    assert padding(batches) < 0.1 * padding(random)
    again = bucket_batches(sizes, 32, torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(batches, again, strict=True))


@pytest.mark.skipif(not os.environ.get("VAELAB_TEST_DATASETS"), reason="needs ../shared/datasets")
def test_the_penn_treebank_reads_as_text() -> None:
    path = Path(os.environ["VAELAB_TEST_DATASETS"]) / "ptb" / "ptb.valid.txt"
    sentences = read_sentences(path)
    assert len(sentences) == 3370 and sum(map(len, sentences)) == 70390  # its README's counts
