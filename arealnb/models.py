"""The embedded policy: a small Qwen2-architecture causal LM trained from scratch on task demonstrations.

No download is ever needed: the tokenizer is a real ``transformers`` fast tokenizer (character level,
built with ``tokenizers``) and the model a real ``Qwen2ForCausalLM``, saved with ``save_pretrained``
(safetensors + tokenizer files), which vLLM and ``AutoModelForCausalLM`` load like any HF checkpoint.
head_dim is 32, one of the head sizes vLLM's CPU attention supports.

Built models are cached under ``data/models/<task>-<size>-s<seed>-<hash>/`` (override the folder with
``$AREALNB_MODELS``); a build is written to a temporary folder and renamed, so a crash never leaves a
half-written cache entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import ModelBuildError
from .tasks import RunningSum

SPECIAL_TOKENS = ["<pad>", "<bos>", "<eos>", "<unk>"]
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
VOCAB_SIZE = 64          # padded; only len(SPECIAL_TOKENS) + len(alphabet) ids are ever produced
CACHE_FORMAT = 2         # bump when the build recipe changes, so old caches are not reused


@dataclass(frozen=True)
class PolicySize:
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    train_steps: int       # default number of AdamW steps
    batch_size: int
    lr: float


SIZES: dict[str, PolicySize] = {
    # ~0.3M parameters: tests; builds in well under a minute on 2 cores.
    "tiny": PolicySize(128, 2, 4, 2, 256, train_steps=1200, batch_size=32, lr=4e-3),
    # ~18M parameters: compute rather than Python overhead dominates; notebooks and benchmarks.
    "small": PolicySize(512, 6, 16, 4, 1536, train_steps=450, batch_size=32, lr=1e-3),
}


def default_model_dir() -> Path:
    env = os.environ.get("AREALNB_MODELS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1] / "data" / "models"


def build_tokenizer(alphabet: str):
    """A character-level ``PreTrainedTokenizerFast``: ids 0-3 special, then one id per character.

    Encoding adds ``<bos>`` in front; decoding joins characters without spaces.
    """
    from tokenizers import Tokenizer, decoders, models, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for ch in alphabet:
        vocab.setdefault(ch, len(vocab))
    if len(vocab) > VOCAB_SIZE:
        raise ModelBuildError(f"alphabet of {len(alphabet)} characters does not fit vocab_size={VOCAB_SIZE}")
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(SPECIAL_TOKENS)
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", BOS_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def qwen2_config(size: str = "tiny", max_len: int = 512):
    from transformers import Qwen2Config

    s = SIZES[size]
    return Qwen2Config(
        vocab_size=VOCAB_SIZE, hidden_size=s.hidden_size, num_hidden_layers=s.num_hidden_layers,
        num_attention_heads=s.num_attention_heads, num_key_value_heads=s.num_key_value_heads,
        intermediate_size=s.intermediate_size, max_position_embeddings=max_len, tie_word_embeddings=False,
        bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID, torch_dtype="float32",
    )


def _cache_key(task, size: str, seed: int, steps: int) -> str:
    blob = json.dumps({"task": task.config(), "size": asdict(SIZES[size]), "seed": seed, "steps": steps,
                       "format": CACHE_FORMAT}, sort_keys=True)
    return f"{task.name}-{size}-s{seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


def build_policy(task=None, path: str | os.PathLike | None = None, seed: int = 0, size: str = "tiny",
                      steps: int | None = None, progress: bool = True) -> Path:
    """Train (or reuse from cache) the embedded policy for ``task``; returns its HF checkpoint folder.

    Parameters
    ----------
    task : a task object (default ``RunningSum()``) with ``alphabet``, ``sample`` and ``config``.
    path : folder to hold the cache entries (default :func:`default_model_dir`).
    seed : seeds both torch and the demonstration sampler; same seed, same weights.
    size : ``"tiny"`` or ``"small"`` (see :data:`SIZES`).
    steps : AdamW steps on demonstrations (default per size). Few steps on purpose: the policy should
        start clearly above zero reward and clearly below its ceiling, leaving RL something to do.
    """
    if size not in SIZES:
        raise ModelBuildError(f"unknown size {size!r}; expected one of {sorted(SIZES)}")
    task = task or RunningSum()
    spec = SIZES[size]
    steps = spec.train_steps if steps is None else int(steps)
    root = Path(path) if path is not None else default_model_dir()
    out = root / _cache_key(task, size, seed, steps)
    if (out / "arealnb_build.json").is_file():
        return out

    import torch
    from tqdm.auto import tqdm
    from transformers import Qwen2ForCausalLM

    tok = build_tokenizer(task.alphabet)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Qwen2ForCausalLM(qwen2_config(size)).float()
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=0.01, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=spec.lr, total_steps=max(steps, 1), pct_start=0.1)
    model.train()
    t0 = time.perf_counter()
    losses = []
    bar = tqdm(range(steps), desc=f"building {size} policy", disable=not progress)
    batches = _length_bucketed(task, rng, spec.batch_size)
    for _ in bar:
        input_ids, labels = _demo_batch(tok, next(batches))
        loss = model(input_ids=input_ids, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", dir=root))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        meta = {"task": task.config(), "size": size, "seed": seed, "steps": steps,
                "n_params": int(sum(p.numel() for p in model.parameters())),
                "final_loss": float(np.mean(losses[-20:])) if losses else None,
                "train_seconds": round(time.perf_counter() - t0, 2), "format": CACHE_FORMAT}
        (tmp / "arealnb_build.json").write_text(json.dumps(meta, indent=1))
        if out.exists():  # an incomplete entry from a crashed build
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _length_bucketed(task, rng, batch_size: int, group: int = 16):
    """Endless batches of demonstrations, each of similar lengths: sample ``group`` batches' worth, sort by
    length, cut, shuffle the batch order. Long-tailed lengths would otherwise make most of a padded batch pad."""
    while True:
        pool = sorted(task.sample(rng, batch_size * group), key=lambda p: len(p.prompt) + len(p.demonstration))
        for g in rng.permutation(group):
            yield pool[g * batch_size:(g + 1) * batch_size]


def _demo_batch(tok, problems):
    """Right-padded ``(input_ids, labels)`` int64 tensors, shape (B, T); loss only on completion + EOS."""
    import torch

    seqs, masks = [], []
    for p in problems:
        prompt = tok(p.prompt)["input_ids"]                       # <bos> + prompt chars
        completion = tok(p.demonstration, add_special_tokens=False)["input_ids"] + [EOS_ID]
        seqs.append(prompt + completion)
        masks.append([0] * len(prompt) + [1] * len(completion))
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), PAD_ID, dtype=torch.long)
    labels = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, (s, m) in enumerate(zip(seqs, masks, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        labels[i, : len(s)] = torch.where(torch.tensor(m, dtype=torch.bool), torch.tensor(s), -100)
    return ids, labels


def load_policy(model_dir: str | os.PathLike, dtype: str = "float32"):
    """``(model, tokenizer)`` from an HF causal-LM folder (the embedded policy or any other), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=getattr(torch, dtype))
    model.eval()
    return model, AutoTokenizer.from_pretrained(model_dir)


def token_logprobs(model, prompt_ids, output_ids, temperature: float = 1.0, top_p: float = 1.0) -> np.ndarray:
    """``log π(output_ids[t] | prompt, output_ids[:t])`` for every t, recomputed with a full forward pass.

    The independent oracle for engine logprobs: float64 log-softmax of the model's logits, divided by
    ``temperature`` (0 = greedy: left as they are) and truncated to the top-p nucleus by vLLM's rule (drop the
    tokens whose ascending cumulative probability is <= 1 - p, always keep the largest), i.e. the sampler's
    distribution. Returns float64, shape (len(output_ids),).
    """
    import torch

    ids = torch.tensor([list(prompt_ids) + list(output_ids)], dtype=torch.long)
    n_p, n_o = len(prompt_ids), len(output_ids)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, n_p - 1:n_p - 1 + n_o].double()   # (n_o, V): rows predict outputs
    logits = logits / (temperature if temperature > 0 else 1.0)
    if top_p < 1:
        srt, idx = logits.sort(dim=-1)
        drop = srt.softmax(-1).cumsum(-1) <= 1 - top_p
        drop[:, -1] = False
        logits = logits.scatter(-1, idx, srt.masked_fill(drop, float("-inf")))
    logp = torch.log_softmax(logits, dim=-1)
    return logp[torch.arange(n_o), torch.tensor(list(output_ids), dtype=torch.long)].numpy()
