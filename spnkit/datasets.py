"""Where benchmark files come from: ``$SPNKIT_DATA`` first, then the local cache, then the public source.

Data files are never part of this repository. ``make`` points ``SPNKIT_DATA`` at ``../shared/data`` when
that folder exists; otherwise a file is downloaded once into ``$SPNKIT_CACHE`` (default
``~/.cache/spnkit``) with a progress bar. Offline and absent, a :class:`DataNotFoundError` names the
variable to set and the URL to fetch by hand.

Paths are relative to the data root, e.g. ``debd/nltcs/nltcs.test.data`` or ``spn/maxspn/nltcs.spn``.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from .errors import DataNotFoundError, SPNFormatError

ENV_DATA = "SPNKIT_DATA"
ENV_CACHE = "SPNKIT_CACHE"

# The 20 DEBD binary density-estimation benchmarks, with their number of variables.
DEBD = {
    "nltcs": 16, "msnbc": 17, "kdd": 64, "plants": 69, "baudio": 100, "jester": 100, "bnetflix": 100,
    "accidents": 111, "tretail": 135, "pumsb_star": 163, "dna": 180, "kosarek": 190, "msweb": 294,
    "book": 500, "tmovie": 500, "cwebkb": 839, "cr52": 889, "c20ng": 910, "bbc": 1058, "ad": 1556,
}
SPLITS = ("train", "valid", "test")

#: The learned SPNs spnkit reads from the data root (../shared/data/spn): name -> path, format detected.
BENCHMARK_SPNS = {
    "nltcs": "spn/maxspn/nltcs.spn",                        # Mei, Jiang & Tu's LearnSPN model (maxspn text)
    "nltcs-em": "spn/pyspn/nltcs/nltcs_em.spn",             # PAC-MAP's nltcs SPN (pyspn)
    "breast-cancer": "spn/spnetworks/breast-cancer.spn",    # SPNetworks.jl asset, categorical (pyspn)
    "nltcs-json": "spn/json/nltcs/spn.json",                # NeuPI's SPNs (node-link JSON, Bernoulli leaves)
    "plants": "spn/json/plants/spn.json",
    "ad": "spn/json/ad/spn.json",
}

#: The DEBD dataset each benchmark SPN models, variables in the same order (checked: every one's test
#: log-likelihood drops by 3-88 nats per row when the columns are shuffled).
DATASET_OF = {"nltcs": "nltcs", "nltcs-em": "nltcs", "nltcs-json": "nltcs", "plants": "plants", "ad": "ad"}

_GH = "https://raw.githubusercontent.com"
#: Public origin of each data-root prefix (pinned commits, see ../shared/data/README.md for provenance).
SOURCES = {
    "debd/": f"{_GH}/arranger1044/DEBD/850908666388f1b1c766a304b37dae14613f1e51/datasets/",
    "spn/maxspn/nltcs.spn": f"{_GH}/meijun/maxspn/e6a29aeff06f8bb6417fd01dff62d48b00e03f2f/data/learnspn/nltcs.spn",
    "spn/maxspn/queries/": f"{_GH}/meijun/maxspn/b8df9fd3cc116940234a5bf6820587d1d556840a/data/",
    "spn/json/": f"{_GH}/Shivvrat/NeuPI/e4b3d7eb78e240557d7dad1317fafb142cfd8d24/examples/networks/spn/",
    "spn/spnetworks/": f"{_GH}/denismaua/SPNetworks.jl/9a1280d5e58dc2539c6d3f9366f64a8862c9aa37/assets/",
}


def cache_dir() -> Path:
    return Path(os.environ.get(ENV_CACHE) or Path.home() / ".cache" / "spnkit")


def source_url(rel: str) -> str | None:
    """The public URL of data file ``rel``, or None when we know no origin for it."""
    for prefix, url in SOURCES.items():
        if rel == prefix:
            return url
        if prefix.endswith("/") and rel.startswith(prefix):
            return url + rel[len(prefix):]
    return None


def data_path(rel: str, download: bool = True) -> Path:
    """Local path of data file ``rel``: ``$SPNKIT_DATA/rel``, else the cache, else downloaded into the cache."""
    rel = rel.lstrip("/")
    root = os.environ.get(ENV_DATA)
    if root and (Path(root) / rel).is_file():
        return Path(root) / rel
    cached = cache_dir() / rel
    if cached.is_file():
        return cached
    url = source_url(rel)
    where = f"${ENV_DATA}={root!r}" if root else f"${ENV_DATA} is not set"
    if url is None or not download:
        raise DataNotFoundError(f"{rel} not found ({where}; cache {cache_dir()}). Set {ENV_DATA} to a folder "
                                f"holding it" + (f" or download it from {url}" if url else ""))
    try:
        _download(url, cached)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise DataNotFoundError(f"{rel} not found ({where}; cache {cache_dir()}) and the download from {url} "
                                f"failed: {exc}. Set {ENV_DATA} to a folder holding {rel} (e.g. ../shared/data), "
                                "or fetch that URL by hand into the cache.") from None
    return cached


def _download(url: str, dest: Path) -> None:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as fh:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name, leave=False) as bar:
            while chunk := resp.read(1 << 16):
                fh.write(chunk)
                bar.update(len(chunk))
    os.replace(tmp, dest)  # never leave a truncated file where a complete one is expected


def load_spn(name: str):
    """One of :data:`BENCHMARK_SPNS` as a :class:`spnkit.FlatSPN` (read via :func:`data_path`)."""
    from .io import load

    if name not in BENCHMARK_SPNS:
        raise KeyError(f"unknown benchmark SPN {name!r}; expected one of {', '.join(BENCHMARK_SPNS)}")
    return load(data_path(BENCHMARK_SPNS[name]))


def benchmark_spns(names=None) -> dict:
    """``{name: FlatSPN}`` for ``names`` (default: every one of :data:`BENCHMARK_SPNS` that can be found);
    an explicitly named SPN that cannot be found raises :class:`DataNotFoundError`."""
    out = {}
    for name in names or BENCHMARK_SPNS:
        try:
            out[name] = load_spn(name)
        except DataNotFoundError:
            if names:
                raise
    return out


def load_debd(name: str, split: str = "test") -> np.ndarray:
    """One split of a DEBD dataset as a uint8 array of shape (rows, n_vars) holding 0/1."""
    if name not in DEBD:
        raise KeyError(f"unknown DEBD dataset {name!r}; expected one of {', '.join(DEBD)}")
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; expected one of {SPLITS}")
    p = data_path(f"debd/{name}/{name}.{split}.data")
    raw = np.frombuffer(p.read_bytes(), dtype=np.uint8)
    n_vars = DEBD[name] if name != "kdd" else 64  # the DEBD README says 65; the files have 64 columns
    width = 2 * n_vars
    if raw.size % width or (raw.size and raw[width - 1] != ord("\n")):
        raise SPNFormatError(f"{p}: expected rows of {n_vars} comma-separated 0/1 digits")
    X = raw.reshape(-1, width)[:, 0::2] - ord("0")
    if X.size and X.max() > 1:
        raise SPNFormatError(f"{p}: found a value other than 0/1")
    return np.ascontiguousarray(X)


def evidence_rows(spn_name: str, split: str = "test") -> np.ndarray:
    """The rows of the dataset behind benchmark SPN ``spn_name`` (:data:`DATASET_OF`), as int64, for drawing
    query evidence from data (``spnkit.compare(..., evidence="data")``)."""
    if spn_name not in DATASET_OF:
        known = ", ".join(DATASET_OF)
        raise KeyError(f"no dataset known for SPN {spn_name!r} (known: {known}); pass evidence={{name: rows}} "
                       "with rows from its own data instead")
    return load_debd(DATASET_OF[spn_name], split).astype(np.int64)
