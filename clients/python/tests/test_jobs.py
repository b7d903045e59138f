"""Batch jobs through the client, against the real server: a job's answers are
`search_batch`'s, padding and all; a filter and options pass through; a job is
deleted (cancelled) and refused when bad."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import Dataset

from vectorwise import ConflictError, NotFound, ValidationError, VectorWiseClient
from vectorwise.filters import Match
from vectorwise.local import LocalServer

DIM = 8


@pytest.fixture(scope="module")
def jobs_server(
    binary: Path, dataset: Dataset, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalServer]:
    data_dir = tmp_path_factory.mktemp("jobs")
    with LocalServer(dataset.index_path, binary=binary, data_dir=data_dir) as s:
        yield s


@pytest.fixture
def vw(jobs_server: LocalServer) -> Iterator[VectorWiseClient]:
    with VectorWiseClient(jobs_server.url, retries=2, backoff=0.01) as c:
        yield c


def make(vw: VectorWiseClient, name: str, n: int) -> np.ndarray:
    vw.create_collection(name, DIM, "l2")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    vw.upsert(name, np.arange(n), x, [{"tag": int(i % 3)} for i in range(n)])
    return x


def test_a_job_answers_as_search_batch(vw: VectorWiseClient) -> None:
    make(vw, "jobs_same", 500)
    q = np.random.default_rng(9).standard_normal((300, DIM)).astype(np.float32)
    job = vw.submit_job("jobs_same", q, k=5)
    assert job["state"] == "queued" and job["queries"] == 300
    done = vw.wait_job("jobs_same", job["id"], timeout=60)
    assert done["state"] == "done" and done["done"] == 300
    ids, distances = vw.job_results("jobs_same", job["id"])
    assert ids.shape == (300, 5) and ids.dtype == np.int64 and distances.dtype == np.float32
    batch = vw.search_batch(q, k=5, collection="jobs_same")
    np.testing.assert_array_equal(ids, batch.ids)
    np.testing.assert_array_equal(distances, batch.distances)
    assert [j["id"] for j in vw.jobs("jobs_same")] == [job["id"]]
    assert vw.delete_job("jobs_same", job["id"])
    assert not vw.delete_job("jobs_same", job["id"], missing_ok=True)
    with pytest.raises(NotFound):
        vw.job("jobs_same", job["id"])


def test_a_filtered_job_pads_short_answers(vw: VectorWiseClient) -> None:
    make(vw, "jobs_filter", 20)
    q = np.random.default_rng(4).standard_normal((10, DIM)).astype(np.float32)
    job = vw.submit_job("jobs_filter", q, k=10, recall_target=1.0, filter=Match("tag", 1))
    assert job["search"] == {"recall_target": 1.0}
    vw.wait_job("jobs_filter", job["id"], timeout=60)
    ids, distances = vw.job_results("jobs_filter", job["id"])
    # 7 of the 20 points have tag 1 (ids 1, 4, ..., 19): 3 slots of padding a row.
    assert ((ids[:, :7] % 3) == 1).all()
    assert (ids[:, 7:] == -1).all() and np.isinf(distances[:, 7:]).all()


def test_bad_jobs_are_refused(vw: VectorWiseClient) -> None:
    make(vw, "jobs_bad", 10)
    with pytest.raises(ValidationError):
        vw.submit_job("jobs_bad", np.full((2, DIM), np.nan, dtype=np.float32), k=3)
    with pytest.raises(ValidationError):
        vw.submit_job("jobs_bad", np.zeros((2, DIM), dtype=np.float32), k=0)
    big = np.random.default_rng(1).standard_normal((300_000, DIM)).astype(np.float32)
    job = vw.submit_job("jobs_bad", big, k=3)
    with pytest.raises(ConflictError):
        vw.job_results("jobs_bad", job["id"])
    assert vw.delete_job("jobs_bad", job["id"])


def test_a_job_whose_answer_holds_a_uuid_point_fails_naming_it(vw: VectorWiseClient) -> None:
    """A job's ids.npy holds integers: the server fails the job rather than answer a
    point with a UUID id, and job_results raises; a job that meets none is answered."""
    x = make(vw, "jobs_uuid", 50)
    u = "550e8400-e29b-41d4-a716-446655440000"
    vw.upsert("jobs_uuid", [uuid.UUID(u)], x[:1] + 0.001)
    job = vw.submit_job("jobs_uuid", x[:3], k=2)
    done = vw.wait_job("jobs_uuid", job["id"], timeout=60)
    assert done["state"] == "failed" and u in done["error"]
    with pytest.raises(ConflictError):
        vw.job_results("jobs_uuid", job["id"])
    far = vw.submit_job("jobs_uuid", x[10:12], k=1, filter=Match("tag", 2))  # not the UUID point
    assert vw.wait_job("jobs_uuid", far["id"], timeout=60)["state"] == "done"
    ids, _ = vw.job_results("jobs_uuid", far["id"])
    assert ids.dtype == np.int64 and ids.shape == (2, 1)
    np.testing.assert_array_equal(
        ids, vw.search_batch(x[10:12], k=1, collection="jobs_uuid", filter=Match("tag", 2)).ids
    )
