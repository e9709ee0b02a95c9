"""Local ``vllm serve`` processes for tests and notebooks: started on free loopback ports, health-checked, logged to
files, stopped with every process they spawned.

A :class:`VLLMServer` runs vLLM's OpenAI-compatible server (``python -m vllm.entrypoints.openai.api_server``) in a
session of its own, with the settings arealnb's in-process engine uses (``engines.vllm_common.build_llm``: eager
mode, an explicit KV cache size, no chunked prefill or prefix caching, the sampler's log-probs) and vLLM's RL
endpoints (``/pause``, ``/resume``, ``/is_paused``, the weight-update calls; ``VLLM_SERVER_DEV_MODE=1``).

Nothing is left behind: :meth:`VLLMServer.stop` signals the server's whole process group (vLLM's API server starts
an engine-core and a worker process under it), then kills what is left after ``grace`` seconds; a server whose
start fails or times out, or is interrupted (Ctrl-C), is stopped the same way; and the servers still running when
Python exits are stopped by an ``atexit`` hook. (A parent killed with ``SIGKILL`` runs no hook: its servers stay
up, in their own sessions, until stopped by hand. ``PR_SET_PDEATHSIG`` would tie them to the *thread* that started
them, which kills a server started from a worker thread the moment that thread ends.) Each server gets its own folder for vLLM's IPC sockets, removed at stop (vLLM leaves
hundreds of socket files in ``$TMPDIR`` otherwise: ../shared/VLLM_CPU.md §8).

This is the process side of :class:`arealnb.engines.RemoteVLLMEngine`; on its own it also serves a policy to
anything that speaks the OpenAI API. On other machines (GPU boxes) run :func:`serve_command`'s command line
with ``VLLM_SERVER_DEV_MODE=1`` instead.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from .errors import ArealnbError, ConfigError

SERVED_NAME = "policy"


class ServerStartError(ArealnbError, RuntimeError):
    """A ``vllm serve`` process did not become healthy; the message ends with its log's last lines."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WORKER_EXTENSION = "arealnb.engines.remote_worker.WeightLoader"


def serve_command(model: str | os.PathLike, *, port: int = 8000, host: str = "127.0.0.1", dtype: str = "float32",
                  kv_cache_bytes: int = 64 << 20, max_num_seqs: int = 64, max_model_len: int | None = None,
                  seed: int = 0, enforce_eager: bool = True, extra_args=()) -> list[str]:
    """The command line of a rollout server for :class:`arealnb.engines.RemoteVLLMEngine` (run it with
    ``VLLM_SERVER_DEV_MODE=1`` in its environment, on a machine where ``arealnb`` is importable: its worker loads
    pushed weights through :mod:`arealnb.engines.remote_worker`).

    The flags are the in-process engine's settings (``engines.vllm_common.build_llm``): an explicit KV-cache size,
    no chunked prefill or prefix caching, the sampler's log-probs, eager mode (``enforce_eager=False`` on a GPU
    box for CUDA graphs); plus ``--enable-scale-out`` (the token-in/token-out ``/inference/v1/generate``
    endpoint, which reports each token's weight version) and the weight-loading worker extension."""
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--served-model-name", SERVED_NAME, "--host", host, "--port", str(int(port)),
           "--dtype", dtype, "--kv-cache-memory-bytes", str(int(kv_cache_bytes)),
           "--max-num-seqs", str(int(max_num_seqs)), "--seed", str(int(seed)),
           "--no-enable-chunked-prefill", "--no-enable-prefix-caching", "--logprobs-mode", "processed_logprobs",
           "--enable-scale-out", "--worker-extension-cls", WORKER_EXTENSION]
    if enforce_eager:
        cmd.append("--enforce-eager")
    if max_model_len is not None:
        cmd += ["--max-model-len", str(int(max_model_len))]
    return cmd + list(extra_args)


_LIVE: set[VLLMServer] = set()
_LIVE_LOCK = threading.Lock()


class VLLMServer:
    """One ``vllm serve`` process serving ``model`` (a local model folder) as ``"policy"`` on 127.0.0.1.

    ``dtype`` float32 by default (log-probs that match a learner's recompute); ``kv_cache_bytes``: the KV cache
    (vLLM would otherwise take ~11 GiB); ``log_dir``: where ``server-<port>.log`` goes (default a temporary
    folder, kept after stop so the log can be read); ``extra_args``: more ``vllm serve`` flags; ``cpus``: the cores
    its model threads are bound to (``VLLM_CPU_OMP_THREADS_BIND``; vLLM's own default binds every server to core 0).
    The model runs in the engine-core process (``--distributed-executor-backend uni``: two processes per server, not
    three). Use as a context manager, or :meth:`start` / :meth:`stop`."""

    def __init__(self, model: str | os.PathLike, *, port: int | None = None, dtype: str = "float32",
                 kv_cache_bytes: int = 64 << 20, max_num_seqs: int = 64, max_model_len: int | None = None,
                 seed: int = 0, startup_timeout: float = 300.0, log_dir: str | os.PathLike | None = None,
                 extra_args: tuple[str, ...] | list[str] = (), env: dict[str, str] | None = None,
                 cpus: str | None = None):
        self.model = Path(model)
        if not (self.model / "config.json").is_file():
            raise ConfigError(f"{self.model} is not a model folder (no config.json): build one with "
                              "arealnb.models.build_policy() or give the folder of a Hugging Face checkpoint")
        if dtype not in ("float32", "bfloat16", "float16", "auto"):
            raise ConfigError(f"dtype={dtype!r}; expected 'float32', 'bfloat16', 'float16' or 'auto'")
        for name, v in (("kv_cache_bytes", kv_cache_bytes), ("max_num_seqs", max_num_seqs)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name}={v!r}; expected a positive integer")
        self.port = int(port) if port is not None else free_port()
        self.dtype, self.kv_cache_bytes, self.max_num_seqs = dtype, int(kv_cache_bytes), int(max_num_seqs)
        self.max_model_len, self.seed, self.startup_timeout = max_model_len, int(seed), float(startup_timeout)
        self.log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="arealnb-serve-"))
        self.log_path = self.log_dir / f"server-{self.port}.log"
        self.extra_args, self.env = tuple(extra_args), dict(env or {})
        if cpus is not None and (not isinstance(cpus, str) or not cpus.strip()):
            raise ConfigError(f"cpus={cpus!r}; expected core ids as vLLM takes them, e.g. '0', '1' or '0-1'")
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self._rpc_dir: str | None = None
        self._shm: set[str] = set()
        self._log = None

    # -- properties ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The ``vllm serve`` command line this server runs."""
        return serve_command(self.model, port=self.port, dtype=self.dtype, kv_cache_bytes=self.kv_cache_bytes,
                             max_num_seqs=self.max_num_seqs, max_model_len=self.max_model_len, seed=self.seed,
                             extra_args=("--distributed-executor-backend", "uni", *self.extra_args))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -- start / stop -------------------------------------------------------------------------------
    def start(self) -> VLLMServer:
        """Start the process and wait until ``/health`` answers (at most ``startup_timeout`` s)."""
        self.spawn()
        self.wait_ready()
        return self

    def spawn(self) -> None:
        """Start the process without waiting (:meth:`wait_ready` waits): several servers start side by side."""
        if self.proc is not None:
            raise ConfigError(f"the server on port {self.port} was started already")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._rpc_dir = tempfile.mkdtemp(prefix="arealnb-vllm-rpc-")
        # An in-process engine of this process sets VLLM_ENABLE_V1_MULTIPROCESSING=0 (arealnb.runtime); a server
        # inheriting it runs its engine core inside the API server's process, many times slower (README).
        inherited = {k: v for k, v in os.environ.items() if k != "VLLM_ENABLE_V1_MULTIPROCESSING"}
        env = {**inherited, "VLLM_SERVER_DEV_MODE": "1", "VLLM_RPC_BASE_PATH": self._rpc_dir,
               "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1",
               **({"VLLM_CPU_OMP_THREADS_BIND": self.cpus} if self.cpus else {}), **self.env}
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(self.command(), stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        with _LIVE_LOCK:
            _LIVE.add(self)

    def wait_ready(self) -> None:
        """Poll ``/health`` until it answers 200; :class:`ServerStartError` (after stopping what started) when the
        process exits first or ``startup_timeout`` passes. Ctrl-C stops the server too."""
        deadline = time.monotonic() + self.startup_timeout
        try:
            while True:
                if self.proc.poll() is not None:
                    raise ServerStartError(f"vllm serve for {self.model} exited with code {self.proc.returncode} "
                                           f"before it was ready; log {self.log_path}:\n{self.log_tail()}")
                if self._healthy():
                    self._shm |= _group_shm(self.proc.pid)
                    return
                if time.monotonic() > deadline:
                    raise ServerStartError(f"vllm serve for {self.model} was not ready after {self.startup_timeout:g} s "
                                           f"(startup_timeout); log {self.log_path}:\n{self.log_tail()}")
                time.sleep(0.25)
        except BaseException:
            self.stop()
            raise

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def stop(self, grace: float = 20.0) -> None:
        """Stop the server and every process under it: ``SIGTERM`` to its process group, ``SIGKILL`` to what is
        left after ``grace`` seconds. Idempotent."""
        p = self.proc
        if p is not None:
            self._shm |= _group_shm(p.pid)
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, sig)
                if _group_gone(p, wait):
                    break
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._rpc_dir is not None:
            shutil.rmtree(self._rpc_dir, ignore_errors=True)
            self._rpc_dir = None
        for f in self._shm:             # vLLM's shared-memory queues outlive a stopped (or killed) server
            with contextlib.suppress(OSError):
                os.unlink(f)
        self._shm = set()
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- requests -----------------------------------------------------------------------------------
    def request(self, method: str, path: str, body: dict | None = None, timeout: float = 60.0):
        """``method path`` on this server with a JSON body; the decoded JSON answer (None when empty)."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def __enter__(self) -> VLLMServer:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.alive() else "stopped" if self.proc is not None else "not started"
        return f"VLLMServer({self.model.name}, {self.url}, {state})"


def _group_shm(pgid: int) -> set[str]:
    """The ``/dev/shm`` files mapped by the processes of group ``pgid`` (Linux ``/proc``; empty elsewhere)."""
    found: set[str] = set()
    for d in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else ():
        try:
            if os.getpgid(int(d.name)) != pgid:
                continue
            for line in (d / "maps").read_text().splitlines():
                i = line.find("/dev/shm/")
                if i >= 0:
                    found.add(line[i:].removesuffix(" (deleted)"))
        except (OSError, ValueError):
            continue
    return found


def _group_gone(p: subprocess.Popen, wait: float) -> bool:
    """Whether process group ``p.pid`` has no process left, waiting up to ``wait`` s (the leader reaped)."""
    deadline = time.monotonic() + wait
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=0.05)
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def start_servers(model: str | os.PathLike, n: int, **kwargs) -> list[VLLMServer]:
    """``n`` servers of ``model`` started side by side (each on its own port; ``kwargs`` as :class:`VLLMServer`'s),
    server ``i`` bound to core ``i mod cores`` unless ``cpus`` is given; all stopped if any fails to start."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n={n!r}; expected a number of servers >= 1")
    ports: set[int] = set()
    while len(ports) < n:
        ports.add(free_port())
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    servers = [VLLMServer(model, port=p, **{"cpus": str(cores[i % len(cores)]), **kwargs})
               for i, p in enumerate(sorted(ports))]
    try:
        for s in servers:
            s.spawn()
        for s in servers:
            s.wait_ready()
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    for s in live:
        s.stop(grace=5.0)
