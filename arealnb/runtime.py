"""Process-level set-up that must happen before vLLM is imported (see ../shared/VLLM_CPU.md).

- ``VLLM_ENABLE_V1_MULTIPROCESSING=0``: the engine core runs in this process (2 s start instead of 15 s,
  half the RAM, weights pushed without serialisation). Set ``AREALNB_VLLM_MULTIPROC=1`` to opt out.
- Hub access off (nothing is ever downloaded at run time), usage stats off, vLLM logging at ERROR.
- AMX tile permission requested before a bf16 model runs: vLLM's bf16 CPU attention uses AMX but never
  asks the kernel for it, and dies with SIGILL on small batches otherwise.
- Thread counts: torch's OpenMP backend keeps the intra-op thread count **per OS thread** (measured: a
  ``set_num_threads(1)`` in one thread leaves the others at 2), and an in-process vLLM engine replaces
  ``torch.set_num_threads`` with a no-op. :func:`set_torch_threads` calls torch's C binding directly, for the
  calling thread.
"""

from __future__ import annotations

import os
import sys
import warnings

_DEFAULTS = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # vLLM logs every step's set-up at INFO and repeats CPU hints at WARNING; in a notebook that buries the
    # results. Errors still show; set VLLM_LOGGING_LEVEL=INFO to see everything.
    "VLLM_LOGGING_LEVEL": "ERROR",
}

_configured = False


def configure() -> None:
    """Idempotent; call before ``import vllm`` (the arealnb modules that import vLLM call it first)."""
    global _configured
    if _configured:
        return
    for k, v in _DEFAULTS.items():
        os.environ.setdefault(k, v)
    # vLLM's kernel scan touches a deprecated torch alias at every engine build; not ours to fix, only noise.
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op.*", category=FutureWarning)
    if os.environ.get("AREALNB_VLLM_MULTIPROC", "0") != "1":
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    import torch

    if hasattr(torch.cpu, "_is_amx_tile_supported") and torch.cpu._is_amx_tile_supported():
        torch._C._cpu._init_amx()
    _configured = True


def before_engine_build() -> None:
    """Call right before constructing a vLLM engine in this process.

    vLLM 0.32 scans every loaded module at engine build (``triton_utils.dispatcher._rebind_kernels``) and
    calls ``vars(value).get(...)`` on each attribute. llvmlite's library proxy (``llvmlite.binding.ffi.lib``,
    loaded by numba, hence by spnkit) answers *any* attribute, ``__dict__`` included, with a function wrapper,
    so the scan dies with ``AttributeError: '_lib_fn_wrapper' object has no attribute 'get'``. A proxy
    without slots has no ``__dict__`` to find; we give it an empty one, which llvmlite never reads.
    """
    configure()
    ffi = sys.modules.get("llvmlite.binding.ffi")
    lib = getattr(ffi, "lib", None) if ffi is not None else None
    fntab = getattr(lib, "_fntab", None)
    if isinstance(fntab, dict) and not isinstance(fntab.get("__dict__"), dict):
        fntab["__dict__"] = {}


def set_torch_threads(n: int) -> None:
    """Set torch's intra-op thread count **for the calling thread**, even after vLLM no-op'ed
    ``torch.set_num_threads``. A learner calls it in the thread that runs its steps."""
    import torch

    torch._C.set_num_threads(int(n))


def torch_threads() -> int:
    """torch's intra-op thread count in the calling thread."""
    import torch

    return int(torch.get_num_threads())
