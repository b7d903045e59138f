"""Example 6: semantic search over sentences, end to end, with no model to download.

    python 06_semantic_search.py [--bin target/release/vectorwise] [--port 0] [--workdir DIR]

1. Embeds the 240 shipped sentences (data/sentences.tsv, 12 topics) with a
   small hashed bag-of-words model: words, word pairs and character 4-grams,
   TF-IDF weighted, hashed with signs into 512 dimensions, L2-normalised.
2. Writes them as sentences.npy and indexes them with `vectorwise build`.
3. Serves the index with `vectorwise serve --port 0` (a free port) and asks it
   questions in plain words, printing the nearest sentences.
4. Scores the search: every sentence as a query should find itself first, and
   most of its next 5 neighbours should be on its topic (chance is 1 in 12).

The binary comes from --bin, else $VECTORWISE_BIN, else `vectorwise` on PATH,
else this checkout's target/release/vectorwise. With --url the example skips
building and serving and queries that server instead, which must serve the
index this example writes (run it once with --workdir to keep the files).
Exits 1 if the search quality checks fail.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import re
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import numpy.typing as npt

from vectorwise import VectorWiseClient, VectorWiseError
from vectorwise.local import LocalServer, build_index

HERE = Path(__file__).resolve().parent
DIM = 512
# fmt: off
STOP = frozenset([
    "a", "an", "and", "are", "as", "at", "be", "before", "by", "can", "each", "every", "for",
    "from", "has", "have", "he", "her", "his", "how", "i", "if", "in", "into", "is", "it",
    "its", "more", "most", "my", "of", "on", "or", "our", "over", "so", "she", "should",
    "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "to",
    "too", "up", "very", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "why", "will", "with", "you", "your",
])
# fmt: on
QUESTIONS = [
    ("how long should bread dough rise", "cooking"),
    ("which planet has rings", "astronomy"),
    ("fixing a bug in my code", "programming"),
    ("the goalkeeper saved the penalty", "football"),
    ("playing chords on a guitar", "music"),
    ("when should I plant tomatoes", "gardening"),
    ("interest rates on a house loan", "finance"),
    ("how many hours of sleep do adults need", "health"),
    ("my flight was cancelled", "travel"),
    ("animals that hunt at night", "animals"),
    ("strong winds and heavy rain tomorrow", "weather"),
    ("ancient empires and their emperors", "history"),
]


def load_corpus(path: Path) -> tuple[list[str], list[str]]:
    topics, sentences = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            topic, sentence = line.split("\t", 1)
            topics.append(topic)
            sentences.append(sentence)
    return topics, sentences


def stem(word: str) -> str:
    """A crude suffix stripper: enough for 'planets' to meet 'planet', 'hunting' 'hunt'."""
    for suffix in ("ing", "ed", "es", "s", "ly"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def features(text: str) -> Counter[str]:
    """Weighted features of a text: words, word pairs, character 4-grams of words."""
    words = [stem(w) for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOP]
    out: Counter[str] = Counter()
    for w in words:
        out["w:" + w] += 1
        padded = f"#{w}#"
        for i in range(len(padded) - 3):
            out["c:" + padded[i : i + 4]] += 1
    for a, b in zip(words, words[1:]):
        out[f"b:{a} {b}"] += 1
    return out


def bucket(feature: str) -> tuple[int, float]:
    """Stable hash (not Python's salted hash()) to a dimension and a sign."""
    h = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
    return h % DIM, (1.0 if h >> 63 else -1.0)


class Embedder:
    """TF-IDF over hashed features; IDF learned from the corpus."""

    def __init__(self, corpus: list[str]) -> None:
        docs = [features(t) for t in corpus]
        df: Counter[str] = Counter(f for d in docs for f in d)
        self.n = len(corpus)
        self.idf = {f: math.log((1 + self.n) / (1 + c)) + 1 for f, c in df.items()}

    def __call__(self, texts: list[str]) -> npt.NDArray[np.float32]:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in zip(out, texts):
            for f, tf in features(text).items():
                # Features the corpus never saw are no help in finding it.
                if f in self.idf:
                    dim, sign = bucket(f)
                    row[dim] += sign * (1 + math.log(tf)) * self.idf[f]
            norm = np.linalg.norm(row)
            if norm > 0:
                row /= norm
            else:  # nothing known: a fixed direction, so the server still answers
                row[0] = 1.0
        return out


def find_binary(given: str | None) -> str:
    candidates = [
        given,
        os.environ.get("VECTORWISE_BIN"),
        shutil.which("vectorwise"),
        str(HERE.parents[2] / "target" / "release" / "vectorwise"),
    ]
    for c in candidates:
        if c and Path(c).is_file():
            return c
    raise SystemExit(
        "error: no vectorwise binary: pass --bin, set VECTORWISE_BIN, or run "
        "`cargo build --release` in the repository"
    )


@contextmanager
def served(args: argparse.Namespace, vectors: npt.NDArray[np.float32]) -> Iterator[str]:
    """Build and serve the index (or use --url); yields the server's URL."""
    if args.url:
        yield args.url
        return
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="vectorwise-semantic-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        binary = find_binary(args.bin)
        npy, index = workdir / "sentences.npy", workdir / "sentences.vwi"
        np.save(npy, vectors)
        build_index(npy, index, binary=binary)
        print(f"indexed {len(vectors)} sentences: {npy} -> {index}")
        with LocalServer(index, binary=binary, port=args.port) as server:
            print(f"serving at {server.url} (vectorwise serve --index {index})\n")
            yield server.url
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="the vectorwise binary")
    parser.add_argument("--port", type=int, default=0, help="port to serve on (0: a free one)")
    parser.add_argument("--workdir", help="keep sentences.npy and sentences.vwi here")
    parser.add_argument("--url", help="query this server (serving this example's index) instead")
    parser.add_argument("--corpus", default=str(HERE / "data" / "sentences.tsv"))
    args = parser.parse_args(argv)

    topics, sentences = load_corpus(Path(args.corpus))
    embed = Embedder(sentences)
    vectors = embed(sentences)
    n_topics = len(set(topics))

    with served(args, vectors) as url, VectorWiseClient(url) as vw:
        stats = vw.stats()
        if (stats["total_vectors"], stats["dimension"]) != vectors.shape:
            print(
                f"FAIL: {url} serves {stats['total_vectors']} x {stats['dimension']}, "
                f"not this example's {vectors.shape[0]} x {vectors.shape[1]}",
                file=sys.stderr,
            )
            return 1

        # Questions in plain words.
        answers = vw.search_batch(embed([q for q, _ in QUESTIONS]), k=3)
        on_topic = 0
        for (question, expected), hits in zip(QUESTIONS, answers):
            print(f"Q: {question}")
            for vid, dist in hits:
                print(f"   {dist:5.3f}  [{topics[vid]}] {sentences[vid]}")
            on_topic += topics[hits.ids[0]] == expected
        print(f"\n{on_topic}/{len(QUESTIONS)} questions: the best answer is on the asked topic")

        # Every sentence as a query: itself first, then its topic.
        k = 6
        batch = vw.search_batch(vectors, k=k)
        self_first = float(np.mean(batch.ids[:, 0] == np.arange(len(sentences))))
        labels = np.array(topics)
        precision = float(np.mean(labels[batch.ids[:, 1:]] == labels[:, None]))
        print(f"each sentence finds itself first: {self_first:.1%}")
        print(
            f"topic precision@{k - 1} of its neighbours: {precision:.1%} "
            f"(chance {1 / n_topics:.1%})"
        )

    ok = self_first >= 0.99 and precision >= 3 / n_topics and on_topic >= len(QUESTIONS) * 2 // 3
    if not ok:
        print("FAIL: search quality below the example's bar", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
