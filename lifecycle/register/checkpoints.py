"""Find and fingerprint TensorFlow training checkpoints, without importing TensorFlow.

A checkpoint is named by its run folder (which means the checkpoint its ``checkpoint`` state
file names, or else the highest-step ``*.index`` in it) or by its prefix (``run/ckpt-60``; the
``.index`` or a ``.data-*`` file name works too). Its files are ``<prefix>.index`` and
``<prefix>.data-NNNNN-of-MMMMM``; its identity is the SHA-256 of their names (relative to the
prefix) and contents, so copying or renaming a run keeps the digest.

Reading the tensors themselves (to catch corrupt data) needs TensorFlow and happens in
:mod:`lifecycle.register.export`; here we catch what can be seen from the files alone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from lifecycle.errors import CheckpointError

STATE_FILE = "checkpoint"
_STATE_RE = re.compile(r'^model_checkpoint_path:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE)
_DATA_RE = re.compile(r"\.data-(\d{5})-of-(\d{5})$")
_STEP_RE = re.compile(r"-(\d+)$")
# A TF checkpoint index is a LevelDB-style table whose 48-byte footer ends with this magic.
_TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
_FOOTER_LEN = 48


@dataclass(frozen=True)
class CheckpointRef:
    """A resolved checkpoint: its prefix, step, files and content digest."""

    prefix: Path
    step: int | None
    files: tuple[Path, ...]
    digest: str

    @property
    def index_file(self) -> Path:
        return self.prefix.with_name(self.prefix.name + ".index")


def step_of(prefix: Path | str) -> int | None:
    """The global step encoded in a prefix name (``ckpt-60`` -> 60), if any."""
    m = _STEP_RE.search(Path(prefix).name)
    return int(m.group(1)) if m else None


def _prefix_from_state(folder: Path) -> Path | None:
    state = folder / STATE_FILE
    if not state.is_file():
        return None
    try:
        text = state.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read checkpoint state file {state}: {e}") from e
    m = _STATE_RE.search(text)
    if not m:
        raise CheckpointError(
            f"checkpoint state file {state} is malformed: it has no model_checkpoint_path line"
        )
    named = Path(m.group(1).replace('\\"', '"').replace("\\\\", "\\"))
    # Relative paths in the state file are relative to its folder; absolute ones may be stale
    # (a copied run), so fall back to the same name inside this folder.
    if not named.is_absolute():
        return folder / named
    if named.with_name(named.name + ".index").exists():
        return named
    return folder / named.name


def _latest_index(folder: Path) -> Path | None:
    prefixes = [p.with_suffix("") for p in folder.glob("*.index")]
    if not prefixes:
        return None
    return max(prefixes, key=lambda p: (step_of(p) or -1, p.name))


def resolve_prefix(path: Path | str) -> Path:
    """The checkpoint prefix ``path`` names (run folder, prefix, or one of its files)."""
    p = Path(path).expanduser()
    if p.is_dir():
        prefix = _prefix_from_state(p) or _latest_index(p)
        if prefix is None:
            raise CheckpointError(
                f"no checkpoint in {path}: it has neither a '{STATE_FILE}' state file nor *.index files"
            )
        if not prefix.with_name(prefix.name + ".index").exists():
            raise CheckpointError(
                f"checkpoint state file in {path} names {prefix.name}, but {prefix.name}.index is missing"
            )
        return prefix
    name = p.name
    if name.endswith(".index"):
        p = p.with_name(name[: -len(".index")])
    elif _DATA_RE.search(name):
        p = p.with_name(_DATA_RE.sub("", name))
    if p.with_name(p.name + ".index").is_file():
        return p
    if p.exists():
        raise CheckpointError(f"{path} is not a checkpoint: expected a run folder or a checkpoint prefix")
    raise CheckpointError(f"no such checkpoint: {path} (expected a run folder or a checkpoint prefix)")


def checkpoint_files(prefix: Path) -> tuple[Path, ...]:
    """The index and every data shard of ``prefix``; CheckpointError if any is missing or truncated."""
    index = prefix.with_name(prefix.name + ".index")
    shards = sorted(prefix.parent.glob(prefix.name + ".data-*-of-*"))
    shards = [s for s in shards if _DATA_RE.search(s.name)]
    if not shards:
        raise CheckpointError(f"checkpoint {prefix} has no data file ({prefix.name}.data-00000-of-NNNNN)")
    total = int(_DATA_RE.search(shards[0].name).group(2))  # type: ignore[union-attr]
    expected = {f"{prefix.name}.data-{i:05d}-of-{total:05d}" for i in range(total)}
    missing = sorted(expected - {s.name for s in shards})
    if missing:
        raise CheckpointError(f"checkpoint {prefix} is incomplete: missing {', '.join(missing[:3])}")
    data = index.read_bytes()
    if len(data) < _FOOTER_LEN or data[-8:] != _TABLE_MAGIC:
        raise CheckpointError(
            f"checkpoint {prefix} is corrupt or truncated: {index.name} is not a TensorFlow checkpoint index"
        )
    return (index, *sorted(s for s in shards if s.name in expected))


def digest_files(prefix: Path, files: tuple[Path, ...]) -> str:
    """SHA-256 over each file's name relative to ``prefix`` and its bytes."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.name[len(prefix.name):].encode() + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return "sha256:" + h.hexdigest()


def resolve(path: Path | str) -> CheckpointRef:
    """Resolve a run folder or prefix to a checkpoint with its step, files and digest."""
    prefix = resolve_prefix(path).resolve()
    files = checkpoint_files(prefix)
    return CheckpointRef(prefix=prefix, step=step_of(prefix), files=files, digest=digest_files(prefix, files))


_STATE_ALL_RE = re.compile(
    r'^(?:all_)?model_checkpoint_paths?:\s*"((?:[^"\\]|\\.)*)"\s*$', re.MULTILINE
)


def state_prefixes(folder: Path | str) -> list[Path]:
    """Every checkpoint prefix the ``checkpoint`` state file of ``folder`` names, as ``folder/<name>``.

    Both ``model_checkpoint_path`` and ``all_model_checkpoint_paths`` count, in file order,
    without duplicates. Names are taken by their last component inside ``folder`` (a copied
    run's state file may hold stale absolute paths). No state file gives an empty list; an
    unreadable one (e.g. caught mid-write by a non-atomic writer) is a CheckpointError.
    """
    folder = Path(folder)
    state = folder / STATE_FILE
    try:
        text = state.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"cannot read checkpoint state file {state}: {e}") from e
    found: dict[str, None] = {}
    for m in _STATE_ALL_RE.finditer(text):
        name = m.group(1).replace('\\"', '"').replace("\\\\", "\\").rstrip("/\\")
        base = name.replace("\\", "/").rsplit("/", 1)[-1]
        if base:
            found.setdefault(base)
    return [folder / name for name in found]
