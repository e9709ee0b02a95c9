"""Validation of a learner's state_dict against what the serving engine expects, before any tensor moves.

A failed ``reload_weights`` inside vLLM leaves the model on meta tensors and kills the engine
(../shared/VLLM_CPU.md §5), so every check that can fail happens here, on the caller's side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import WeightUpdateError


@dataclass(frozen=True)
class WeightSpec:
    """Names and shapes of the checkpoint's tensors, and the dtype the engine serves them in."""

    shapes: dict[str, tuple[int, ...]]
    dtype: str                      # torch dtype name, e.g. "float32"
    tied_aliases: frozenset[str]    # names a learner's state_dict may carry but the checkpoint omits

    @classmethod
    def from_checkpoint(cls, model_path: str | Path, dtype: str) -> WeightSpec:
        from safetensors import safe_open

        root = Path(model_path)
        index = root / "model.safetensors.index.json"
        files = (sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.is_file()
                 else ["model.safetensors"])
        shapes: dict[str, tuple[int, ...]] = {}
        for f in files:
            with safe_open(str(root / f), framework="pt") as fh:
                for k in fh.keys():
                    shapes[k] = tuple(fh.get_slice(k).get_shape())
        cfg = json.loads((root / "config.json").read_text()) if (root / "config.json").is_file() else {}
        tied = frozenset({"lm_head.weight"} if cfg.get("tie_word_embeddings") and "lm_head.weight" not in shapes
                         else set())
        return cls(shapes=shapes, dtype=dtype, tied_aliases=tied)

    def check(self, state_dict, check_finite: bool = True, what: str = "weight update") -> list[tuple[str, object]]:
        """Return the ``(name, tensor)`` list to load, or raise :class:`WeightUpdateError` listing every problem."""
        import torch

        if not hasattr(state_dict, "items"):
            raise WeightUpdateError(f"{what}: expected a state_dict (name -> tensor), got {type(state_dict).__name__}")
        want_dtype = getattr(torch, self.dtype)
        problems: list[str] = []
        items = []
        for name, t in state_dict.items():
            if name in self.tied_aliases:
                continue
            if name not in self.shapes:
                problems.append(f"unknown tensor {name!r}")
                continue
            if not isinstance(t, torch.Tensor):
                problems.append(f"{name!r} is a {type(t).__name__}, not a tensor")
                continue
            if tuple(t.shape) != self.shapes[name]:
                problems.append(f"{name!r} has shape {tuple(t.shape)}, expected {self.shapes[name]}")
            if t.dtype != want_dtype:
                problems.append(f"{name!r} has dtype {t.dtype}, expected {want_dtype} (the engine's dtype; "
                                f"cast with .to({want_dtype}))")
            if t.device.type != "cpu":
                problems.append(f"{name!r} is on {t.device}, expected cpu")
            items.append((name, t.detach()))
        missing = sorted(set(self.shapes) - set(state_dict.keys()))
        if missing:
            problems.append(f"{len(missing)} tensor(s) missing, e.g. {missing[:3]} (a push must carry all "
                            f"{len(self.shapes)} tensors)")
        if not problems and check_finite:
            bad = [n for n, t in items if t.is_floating_point() and not bool(torch.isfinite(t).all())]
            problems += [f"{n!r} holds NaN or inf" for n in bad]
        if problems:
            shown = "; ".join(problems[:6]) + (f"; and {len(problems) - 6} more" if len(problems) > 6 else "")
            raise WeightUpdateError(f"{what} refused before touching the engine, which keeps serving its current "
                                    f"weights: {shown}")
        return items
