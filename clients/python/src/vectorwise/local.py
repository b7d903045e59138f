"""Run the ``vectorwise`` binary from Python: build an index, serve it on a free port.

Handy for tests, notebooks and examples that want their own server::

    from vectorwise.local import LocalServer, build_index

    build_index("sentences.npy", "sentences.vwi")
    with LocalServer("sentences.vwi") as server, VectorWiseClient(server.url) as vw:
        print(vw.stats())

The binary is found from the ``binary`` argument, else ``$VECTORWISE_BIN``,
else ``vectorwise`` on ``PATH``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Union

from ._client import VectorWiseClient
from .errors import VectorWiseError

__all__ = ["LocalServer", "LocalServerError", "build_index", "find_binary"]

StrPath = Union[str, "os.PathLike[str]"]


class LocalServerError(VectorWiseError):
    """The binary is missing, or a command failed, or the server did not start."""


def find_binary(binary: StrPath | None = None) -> Path:
    """The ``vectorwise`` executable: ``binary``, else ``$VECTORWISE_BIN``, else on ``PATH``."""
    candidate = binary or os.environ.get("VECTORWISE_BIN") or shutil.which("vectorwise")
    if not candidate:
        raise LocalServerError(
            "vectorwise binary not found: pass binary=..., set VECTORWISE_BIN, or put it on "
            "PATH (`cargo build --release` makes target/release/vectorwise)"
        )
    path = Path(candidate)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise LocalServerError(f"{path} is not an executable file")
    return path


def build_index(
    vectors: StrPath,
    out: StrPath,
    *,
    binary: StrPath | None = None,
    extra_args: Sequence[str] = (),
    timeout: float | None = None,
) -> Path:
    """Run ``vectorwise build --vectors VECTORS --out OUT [extra_args]``; returns ``out``.

    ``vectors`` is a float32 2-D ``.npy`` (``np.save(path, arr.astype("float32"))``)
    or ``.fvecs`` file. ``extra_args`` e.g. ``["--m", "16", "--threads", "2"]``.
    """
    cmd = [str(find_binary(binary)), "build", "--vectors", str(vectors), "--out", str(out)]
    done = subprocess.run(
        [*cmd, *extra_args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise LocalServerError(
            f"`{' '.join(cmd)}` exited {done.returncode}: {done.stderr.strip()[-2000:]}"
        )
    return Path(out)


class LocalServer:
    """``vectorwise serve`` as a child process, on loopback and (by default) a free port.

    `start` (or ``with``) launches it, reads the address it logs, and waits
    until ``GET /`` answers healthy; `stop` sends SIGTERM and waits for the
    clean exit. The server's log (JSON lines) goes to ``log_path``, a
    temporary file unless given.

    Args:
        index: The index file to serve.
        binary: The executable (see `find_binary`).
        host: Address to bind.
        port: Port to bind; 0 picks a free one.
        extra_args: More ``serve`` flags, e.g. ``["--ef-search", "256"]``.
        env: Extra environment variables for the child.
        startup_timeout: Seconds to wait for the address and for health.
        log_path: Where the server's log goes.
        wait_ready: Wait in `start` until the index is served (else return
            once the port is open, e.g. to watch a first-run build's 503s).
    """

    def __init__(
        self,
        index: StrPath,
        *,
        binary: StrPath | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        startup_timeout: float = 30.0,
        log_path: StrPath | None = None,
        wait_ready: bool = True,
        data_dir: StrPath | None = None,
    ) -> None:
        self.index = Path(index)
        # Collections live in ``data_dir``; without one, a temporary directory
        # removed at ``stop`` (so a test never writes into the working directory).
        self._own_data = data_dir is None
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="vectorwise-data-"))
        self.binary = find_binary(binary)
        self.host = host
        self.port = port
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.wait_ready = wait_ready
        self._own_log = log_path is None
        self.log_path = Path(log_path) if log_path else self._temp_log()
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.url = ""
        self._deadline = 0.0

    @staticmethod
    def _temp_log() -> Path:
        fd, name = tempfile.mkstemp(prefix="vectorwise-serve-", suffix=".log")
        os.close(fd)
        return Path(name)

    def log(self) -> str:
        """The server's log so far."""
        return self.log_path.read_text(errors="replace")

    def start(self) -> LocalServer:
        """Launch the server and wait until it listens (and, with ``wait_ready``, is healthy)."""
        if self.process is not None:
            raise LocalServerError("already started")
        cmd = [
            str(self.binary),
            "serve",
            "--index",
            str(self.index),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--log-format",
            "json",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        # `listening` is logged at info; a stricter inherited RUST_LOG would hide it.
        env = {**os.environ, "RUST_LOG": "info", **self.env}
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=env
        )
        try:
            self.url = f"http://{self._wait_for_address()}"
            if not self.wait_ready:
                return self
            with VectorWiseClient(self.url, retries=0) as client:
                remaining = max(0.1, self._deadline - time.monotonic())
                client.wait_until_ready(timeout=remaining, interval=0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_for_address(self) -> str:
        assert self.process is not None
        self._deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < self._deadline:
            for line in self.log().splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                fields = record.get("fields", {}) if isinstance(record, dict) else {}
                if fields.get("message") == "listening":
                    return str(fields["address"])
            if self.process.poll() is not None:
                raise LocalServerError(
                    f"vectorwise serve exited {self.process.returncode} before listening:\n"
                    + self.log()[-2000:]
                )
            time.sleep(0.02)
        raise LocalServerError(
            f"vectorwise serve logged no address in {self.startup_timeout} s:\n"
            + self.log()[-2000:]
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait for the exit (SIGKILL after ``timeout``); returns the exit code."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            code = self.process.returncode
            self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._own_data:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return code

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        if self._own_log and exc_type is None:
            self.log_path.unlink(missing_ok=True)
