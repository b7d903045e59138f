"""Example 8: semantic search within one topic: filters and payload indexes on a collection.

    python 08_filtered_search.py [--url URL] [--name NAME] [--keep]

Against a running `vectorwise serve` (its --data-dir holds the collection):
1. embeds example 6's 240 sentences (data/sentences.tsv, 12 topics) with its hashed
   TF-IDF model (imported from 06_semantic_search.py: no model to download);
2. writes them to the collection NAME, each with a payload
   {"topic": ..., "line": its line in the file, "words": its word count};
3. indexes "topic" (keyword) and "words" (integer), so filters on them read the
   indexes rather than every payload;
4. asks questions whose words fit more than one topic ("what makes it rise":
   dough or interest rates?) over every sentence, then within each topic
   (`Match("topic", ...)`), then short sentences of two topics
   (`MatchAny` + `Range`), printing what the server reports of each filter;
5. checks every filtered answer against numpy: the hits are on the topics
   asked, and are the nearest sentences among those that pass.
Deletes the collection at the end (unless --keep). Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from vectorwise import CollectionSearchResult, VectorWiseClient, VectorWiseError
from vectorwise.filters import Filter, Match, MatchAny, Range

HERE = Path(__file__).resolve().parent
# Questions whose words belong to two topics, and the topics to ask them within.
AMBIGUOUS = [
    ("what makes it rise", ["cooking", "finance"]),
    ("the season is over", ["football", "cooking"]),
    ("bright rings", ["astronomy", "music"]),
]


def semantic_search() -> ModuleType:
    """Example 6 as a module (its corpus loader and embedder)."""
    spec = importlib.util.spec_from_file_location("semantic_search", HERE / "06_semantic_search.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"error: cannot load {HERE / '06_semantic_search.py'}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("VECTORWISE_URL", "http://localhost:8000"))
    parser.add_argument("--name", default="example_08")
    parser.add_argument("--corpus", default=str(HERE / "data" / "sentences.tsv"))
    parser.add_argument("--keep", action="store_true", help="leave the collection in place")
    args = parser.parse_args(argv)

    six = semantic_search()
    topics, sentences = six.load_corpus(Path(args.corpus))
    embed = six.Embedder(sentences)
    vectors: npt.NDArray[np.float32] = embed(sentences)
    ids = np.arange(len(sentences), dtype=np.int64)
    words = [len(s.split()) for s in sentences]
    payloads = [
        {"topic": t, "line": i + 2, "words": n}  # line 1 of the file is its header
        for i, (t, n) in enumerate(zip(topics, words))
    ]
    labels = np.array(topics)

    ok = True

    def check(cond: bool, what: str) -> None:
        nonlocal ok
        if not cond:
            print(f"FAIL: {what}", file=sys.stderr)
            ok = False

    def show(title: str, hits: CollectionSearchResult) -> None:
        f = hits.used.filter
        seen = "" if f is None else f"   ({f.allowed} of {len(ids)} sentences pass)"
        print(f"  {title}{seen}")
        for pid, dist in hits:
            print(f"     {dist:5.3f}  [{topics[pid]}] {sentences[pid]}")

    def verify(hits: CollectionSearchResult, query: Any, passes: npt.NDArray[np.bool_]) -> None:
        """The hits are the nearest sentences among those that pass (cosine: 2 - 2 cos)."""
        rows = np.flatnonzero(passes)
        d = 2.0 - 2.0 * (vectors[rows].astype(np.float64) @ query.astype(np.float64))
        want = np.sort(d)[: len(hits)]
        check(bool(passes[hits.ids].all()), f"a hit does not pass its filter: {hits.ids}")
        check(len(hits) == min(3, len(rows)), f"{len(hits)} hits for {len(rows)} sentences")
        check(np.allclose(hits.distances, want, atol=1e-4), "not the nearest that pass")
        f = hits.used.filter
        check(f is not None and f.allowed == len(rows), f"allowed {f}, expected {len(rows)}")
        check(f is not None and f.unindexed == (), f"keys read from payloads: {f}")

    with VectorWiseClient(args.url) as vw:
        vw.create_collection(args.name, dimension=vectors.shape[1], metric="cosine")
        vw.upsert(args.name, ids, vectors, payloads)
        for field, kind in (("topic", "keyword"), ("words", "integer")):
            created = vw.create_payload_index(args.name, field, kind)
            print(
                f"payload index on {field!r} ({kind}): {'created' if created else 'already there'}"
            )
        print(f"{len(ids)} sentences in the collection {args.name!r}, {len(set(topics))} topics\n")

        for question, asked in AMBIGUOUS:
            q = embed([question])[0]
            print(f"Q: {question}")
            show("everywhere:", vw.search(q, k=3, collection=args.name))
            for topic in asked:
                hits = vw.search(q, k=3, collection=args.name, filter=Match("topic", topic))
                show(f"within {topic}:", hits)
                verify(hits, q, labels == topic)
            print()

        # Short sentences (at most 8 words) about travel or the weather.
        question = "a stormy trip"
        short = Filter(must=[MatchAny("topic", ["travel", "weather"]), Range("words", lte=8)])
        q = embed([question])[0]
        hits = vw.search(q, k=3, collection=args.name, filter=short, with_payload=True)
        print(f"Q: {question}")
        show("travel or weather, at most 8 words:", hits)
        verify(hits, q, np.isin(labels, ["travel", "weather"]) & (np.array(words) <= 8))
        info = hits.used.filter
        if info is not None:
            print(
                f"  the filter let {info.selectivity:.1%} of the points through "
                f"({info.allowed}); searched by: {', '.join(info.paths)}; "
                f"keys read from payloads: {', '.join(info.unindexed) or 'none'}"
            )
        check(
            all(p is not None and p["words"] <= 8 for p in hits.payloads or [None]),
            "a hit has more than 8 words",
        )

        # A batch: one filter for every row.
        questions = embed([text for text, _ in AMBIGUOUS])
        batch = vw.search_batch(
            questions, k=3, collection=args.name, filter=Match("topic", "cooking")
        )
        check(bool((labels[batch.ids] == "cooking").all()), "a batch hit is not about cooking")
        # A key without an index still filters, by reading every payload; the server says so.
        by_line = vw.search(q, k=3, collection=args.name, filter=Range("line", lt=50))
        check(bool((by_line.ids + 2 < 50).all()), "a hit from line 50 or later")
        slow = by_line.used.filter.unindexed if by_line.used.filter else ()
        print(f"\na filter on 'line', which has no index: keys read from payloads: {slow}")
        check(slow == ("line",), f"expected 'line' to be reported unindexed, got {slow}")

        if not args.keep:
            vw.delete_collection(args.name)
            print(f"deleted the collection {args.name!r}")
    if not ok:
        print("FAIL: filtered search checks failed", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except VectorWiseError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
