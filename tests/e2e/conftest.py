"""E2E tier: local mode started as a user starts it, driven over HTTP.

``imagesearch local --port P --dropbox D`` runs as a subprocess (the console
script next to this Python), with fake AWS credentials, no AWS config files, and
``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` pointing at an in-process ``FakeBedrock``
(colour-aware: the text "red" ranks a red image first). No timing assertions:
helpers poll until a condition holds or a generous deadline passes.

Fixtures
    ``bedrock`` (session)       the running ``FakeBedrock``; fault knobs such as
                                ``fail_next`` reach every local mode started here.
    ``local_env`` (session)     the environment for subprocesses (fake credentials,
                                region, the fake Bedrock endpoint). Use it for any
                                other ``imagesearch`` command run in e2e tests.
    ``local_mode`` (module)     a shared ``LocalProcess`` for the tests of one module.
                                Use distinct file names per test: it is shared.
    ``start_local_mode`` (function)  factory ``(**options) -> LocalProcess`` for a
                                private instance (tests that stop it or need a clean
                                state); every instance is stopped at teardown.
    ``imagesearch_command``     argv prefix of the console script, e.g. for
                                ``[*imagesearch_command, "status", ...]``.

``LocalProcess``
    ``url``, ``port``, ``dropbox`` (Path), ``process`` (Popen), ``log_path``;
    ``get/post/delete(path, **kwargs)`` -> ``requests.Response`` relative to ``url``;
    ``drop(name, data) -> key`` writes a file into the drop folder (``name`` may hold
    "/" for subfolders) and returns its object key; ``remove(name)``;
    ``key_for(name)``, ``image_id_for(name)``;
    ``wait_until(predicate, timeout=60, interval=0.25, message=...)`` polls until
    ``predicate()`` returns something truthy and returns it, else fails with the
    message and the tail of local mode's log;
    ``wait_indexed(*names)`` / ``wait_status(name, status)`` -> the record;
    ``wait_gone(name)``; ``search(**body)`` -> result list;
    ``stop(sig=SIGINT, timeout=30) -> exit code``; ``log()`` -> its output so far.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from fakes.bedrock import FakeBedrock
from imagesearch.records import image_id_for_key
from tests.support.iam.recorder import ENV_RECORD_DIR

ROOT = Path(__file__).resolve().parents[2]
IAM_SITECUSTOMIZE = ROOT / "tests" / "support" / "iam" / "sitecustomize"
UPLOAD_PREFIX = "uploads/"
START_TIMEOUT = 90.0
T = TypeVar("T")


class LocalProcess:
    """One ``imagesearch local`` subprocess and helpers to drive it."""

    def __init__(self, command: list[str], env: dict[str, str], dropbox: Path, log_path: Path):
        self.dropbox = dropbox
        self.log_path = log_path
        self.port = 0
        self.url = ""
        self._command = command
        self._env = env
        self._session = requests.Session()
        self.process: subprocess.Popen[bytes] | None = None

    # --- lifecycle ------------------------------------------------------------------

    def start(self, *extra: str) -> LocalProcess:
        for _attempt in range(3):  # a free port can be taken between probe and bind
            self.port = _free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            with self.log_path.open("ab") as log:
                self.process = subprocess.Popen(
                    [
                        *self._command,
                        "local",
                        "--port",
                        str(self.port),
                        "--dropbox",
                        str(self.dropbox),
                        *extra,
                    ],
                    env=self._env,
                    cwd=self.dropbox.parent,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            if self._wait_healthy():
                return self
            if "cannot listen" not in self.log():
                break
        self.stop()
        raise RuntimeError(f"local mode did not become healthy:\n{self.log()[-4000:]}")

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                return False
            try:
                if requests.get(f"{self.url}/health", timeout=30).status_code == 200:
                    return True
            except requests.RequestException:
                pass
            time.sleep(0.2)
        return False

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int | None:
        """Signal the process and wait for it; killed if it does not stop in time."""
        self._session.close()
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # --- HTTP -------------------------------------------------------------------------

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self._session.get(self.url + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self._session.post(self.url + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self._session.delete(self.url + path, timeout=30, **kwargs)

    def search(self, **body: Any) -> list[dict[str, Any]]:
        response = self.post("/search", json=body)
        assert response.status_code == 200, response.text
        results: list[dict[str, Any]] = response.json()["results"]
        return results

    # --- drop folder --------------------------------------------------------------------

    def key_for(self, name: str) -> str:
        return UPLOAD_PREFIX + name

    def image_id_for(self, name: str) -> str:
        return image_id_for_key(self.key_for(name))

    def drop(self, name: str, data: bytes) -> str:
        path = self.dropbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.key_for(name)

    def remove(self, name: str) -> None:
        (self.dropbox / name).unlink()

    # --- waiting ----------------------------------------------------------------------

    def wait_until(
        self,
        predicate: Callable[[], T],
        timeout: float = 60.0,
        interval: float = 0.25,
        message: str = "condition",
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self.process is not None and self.process.poll() is not None:
                pytest.fail(f"local mode exited while waiting for {message}:\n{self.log()[-4000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {message}:\n{self.log()[-4000:]}")
            time.sleep(interval)

    def record(self, name: str) -> dict[str, Any] | None:
        response = self.get(f"/images/{self.image_id_for(name)}")
        return response.json() if response.status_code == 200 else None

    def wait_status(self, name: str, status: str, timeout: float = 60.0) -> dict[str, Any]:
        def current() -> dict[str, Any] | None:
            record = self.record(name)
            return record if record and record["status"] == status else None

        return self.wait_until(current, timeout, message=f"{name} to be {status}")

    def wait_indexed(self, *names: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        return [self.wait_status(name, "indexed", timeout) for name in names]

    def wait_gone(self, name: str, timeout: float = 60.0) -> None:
        image_id = self.image_id_for(name)
        self.wait_until(
            lambda: self.get(f"/images/{image_id}").status_code == 404,
            timeout,
            message=f"{name} to be removed",
        )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def bedrock() -> Iterator[FakeBedrock]:
    with FakeBedrock() as fake:
        yield fake


@pytest.fixture(scope="session")
def local_env(bedrock: FakeBedrock) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "POWERTOOLS_")) and name not in ("PORT", "DROPBOX")
    }
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # Never the developer's real AWS configuration.
            "AWS_CONFIG_FILE": str(ROOT / "tests" / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(ROOT / "tests" / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": bedrock.endpoint_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if env.get(ENV_RECORD_DIR):
        # Local mode's handlers record their AWS calls too (sitecustomize installs it).
        paths = [str(IAM_SITECUSTOMIZE), str(ROOT), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    return env


@pytest.fixture(scope="session")
def imagesearch_command() -> list[str]:
    script = Path(sys.executable).parent / "imagesearch"
    if not script.exists():
        pytest.fail(f"console script {script} is missing: run `make dev` (pip install -e .)")
    return [str(script)]


def _new_instance(
    factory: pytest.TempPathFactory, command: list[str], env: dict[str, str], name: str
) -> LocalProcess:
    base = factory.mktemp(name)
    return LocalProcess(command, env, base / "dropbox", base / "local-mode.log")


@pytest.fixture(scope="module")
def local_mode(
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Iterator[LocalProcess]:
    instance = _new_instance(tmp_path_factory, imagesearch_command, local_env, "local")
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def start_local_mode(
    tmp_path_factory: pytest.TempPathFactory,
    imagesearch_command: list[str],
    local_env: dict[str, str],
) -> Iterator[Callable[..., LocalProcess]]:
    started: list[LocalProcess] = []

    def start(*extra: str) -> LocalProcess:
        instance = _new_instance(tmp_path_factory, imagesearch_command, local_env, "private")
        started.append(instance)
        return instance.start(*extra)

    yield start
    for instance in started:
        instance.stop()
