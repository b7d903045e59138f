"""API keys and rate limits through the client, against the real server.

One server with an admin key (VECTORWISE_API_KEY), a read key from a keys
file made with `vectorwise keys new`, and a search budget of 2 a second: the
client sends its key, is told 401/403 with typed errors, and rides out 429s
by waiting their Retry-After.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import Dataset

from vectorwise import (
    AuthenticationError,
    PermissionDenied,
    RateLimited,
    VectorWiseClient,
)
from vectorwise.local import LocalServer

ADMIN = "python-admin-key-0123456789"
SEARCHES_PER_SECOND = 2


@pytest.fixture(scope="module")
def read_key(binary: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """A read key made by `vectorwise keys new`, and the keys file holding its line."""
    out = subprocess.run(
        [str(binary), "keys", "new", "--name", "py-reader", "--role", "read"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    key, line = out
    keys_file = tmp_path_factory.mktemp("keys") / "keys.jsonl"
    keys_file.write_text(line + "\n")
    return key, keys_file


@pytest.fixture(scope="module")
def keyed_server(
    binary: Path, dataset: Dataset, read_key: tuple[str, Path]
) -> Iterator[LocalServer]:
    _, keys_file = read_key
    args = ["--api-keys-file", str(keys_file), "--rate-limit-search", str(SEARCHES_PER_SECOND)]
    with LocalServer(
        dataset.index_path, binary=binary, extra_args=args, env={"VECTORWISE_API_KEY": ADMIN}
    ) as s:
        yield s


def test_keys_are_sent_and_refusals_are_typed(
    keyed_server: LocalServer, dataset: Dataset, read_key: tuple[str, Path]
) -> None:
    key, _ = read_key
    query = dataset.vectors[5]
    with VectorWiseClient(keyed_server.url, retries=0) as anonymous:
        assert anonymous.health()["status"] == "healthy", "health stays open"
        with pytest.raises(AuthenticationError) as missing:
            anonymous.stats()
        assert missing.value.status == 401
        assert "Not authenticated" in str(missing.value.detail)
    with VectorWiseClient(keyed_server.url, retries=0, api_key="vw_not-a-key-0123456789") as wrong:
        with pytest.raises(AuthenticationError) as unknown:
            wrong.stats()
        assert unknown.value.detail == "Invalid API key"
    with VectorWiseClient(keyed_server.url, api_key=key) as reader:
        hits = reader.search(query, k=3)
        assert hits.ids[0] == 5
        with pytest.raises(PermissionDenied) as denied:
            reader.create_collection("not-for-readers", dimension=4)
        assert denied.value.status == 403
    with VectorWiseClient(keyed_server.url, api_key=ADMIN) as admin:
        admin.create_collection("for-admins", dimension=4)
        assert "for-admins" in [c["name"] for c in admin.list_collections()]
        admin.delete_collection("for-admins")


def rate_limited_total(url: str) -> float:
    text = httpx.get(f"{url}/metrics", headers={"authorization": f"Bearer {ADMIN}"}).text
    match = re.search(r'^vectorwise_rate_limited_total\{budget="search"\} (\S+)$', text, re.M)
    assert match, text
    return float(match.group(1))


def test_429_is_waited_out_and_retry_after_is_reported(
    keyed_server: LocalServer, dataset: Dataset
) -> None:
    before = rate_limited_total(keyed_server.url)
    queries = dataset.vectors[:6]
    start = time.monotonic()
    with VectorWiseClient(keyed_server.url, api_key=ADMIN, retries=10, backoff_max=5) as patient:
        found = [int(patient.search(q, k=1).ids[0]) for q in queries]
    elapsed = time.monotonic() - start
    assert found == list(range(6)), "every search answered, after waiting"
    refused = rate_limited_total(keyed_server.url) - before
    assert refused >= 1, "the budget was exceeded on the way"
    # A burst of 2 a second: six searches take at least 2 s (generous bound).
    assert elapsed >= 1.5, elapsed

    # Without retries, the 429 itself with the server's Retry-After (whole seconds, >= 1).
    def hurry() -> None:
        with VectorWiseClient(keyed_server.url, api_key=ADMIN, retries=0) as hasty:
            for q in np.repeat(queries[:1], 10, axis=0):
                hasty.search(q, k=1)

    with pytest.raises(RateLimited) as info:
        hurry()
    assert info.value.status == 429
    assert info.value.retry_after is not None and info.value.retry_after >= 1
    assert "too many searches" in str(info.value.detail)
