"""Runs inside each ``vllm serve`` worker process (``--worker-extension-cls
arealnb.engines.remote_worker.WeightLoader``, set by :mod:`arealnb.serve`): loads pushed weights by path.

vLLM's shipped weight-transfer backends are CUDA/NCCL only, and tensors sent as RPC arguments do not survive its
serialisation (../shared/VLLM_CPU.md §5). So the client writes the new weights once as a safetensors file on
storage both sides see (``/dev/shm`` on one machine, a shared folder across machines) and calls
``POST /collective_rpc {"method": "arealnb_load_weights", "args": [path]}``; each worker reads the file and hands
its tensors to vLLM's ``reload_weights`` (the layerwise reload that also redoes the CPU weight repacking). The client
validated names, shapes, dtypes and values first (``WeightSpec``): a failed reload would leave the model on meta
tensors. A file that cannot be read fails the call before anything is loaded.

Importing this module also requests AMX permission for the process (vLLM's bf16 attention kernel otherwise dies
with SIGILL on the first request: ../shared/VLLM_CPU.md §7).
"""

from __future__ import annotations

import torch

if torch.cpu._is_amx_tile_supported():
    torch._C._cpu._init_amx()


class WeightLoader:
    """Mixed into vLLM's worker class: ``self`` is the worker (``self.model_runner``, ``self.reload_weights``)."""

    def arealnb_load_weights(self, path: str) -> dict:
        """Load the safetensors file at ``path`` into the served model; returns the number of tensors loaded."""
        from safetensors.torch import load_file

        tensors = load_file(path)
        if not tensors:
            raise ValueError(f"{path} holds no tensors; weights not loaded")
        self.reload_weights(weights_iterator=list(tensors.items()))
        return {"tensors": len(tensors), "path": path}
