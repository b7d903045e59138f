"""Each of the eight examples runs start to finish against the real server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Dataset

from vectorwise.local import LocalServer

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
ARGS = {
    "05_latency_benchmark.py": ["--queries", "200", "--batch", "50"],
}


def test_there_are_eight_examples() -> None:
    assert len(sorted(EXAMPLES.glob("0*.py"))) == 8


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("0*.py")))
def test_example_runs(example: str, server: LocalServer, dataset: Dataset, binary: Path) -> None:
    env = {
        **os.environ,
        "VECTORWISE_URL": server.url,
        "VECTORWISE_VECTORS_PATH": str(dataset.vectors_path),
        "VECTORWISE_BIN": str(binary),
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / example), *ARGS.get(example, [])],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{example} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert done.stdout.strip()


def test_an_example_fails_when_the_server_is_down(free_port: int) -> None:
    env = {**os.environ, "VECTORWISE_URL": f"http://127.0.0.1:{free_port}"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "01_health_and_stats.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "error:" in done.stderr


def _run_profiles(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "profiles.py"),
            "--queries",
            "200",
            "--latency",
            "30",
            *args,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_profiles_example_builds_its_own_calibrated_index(binary: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VECTORWISE_")}
    done = _run_profiles({**env, "VECTORWISE_BIN": str(binary)}, "--n", "5000")
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "built and calibrated 5000 x 64" in done.stdout
    for row in ("low_latency", "balanced", "high_accuracy", "recall_target=1.0"):
        assert row in done.stdout


def test_profiles_example_against_a_running_server(
    profile_server: LocalServer, profile_dataset: Dataset
) -> None:
    env = {
        **os.environ,
        "VECTORWISE_URL": profile_server.url,
        "VECTORWISE_VECTORS_PATH": str(profile_dataset.vectors_path),
    }
    done = _run_profiles(env)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "server default: balanced" in done.stdout
    assert "built and calibrated" not in done.stdout
