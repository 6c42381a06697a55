"""A simulated trainer for the watch tests: writes checkpoints slowly, in bursts and half-written.

It writes files the way a real trainer can be caught doing it: the ``.data-*`` shards in
chunks (optionally stopping half-way for a while), then the ``.index``, then the ``checkpoint``
state file (atomically, as TensorFlow does). Contents come from a real checkpoint (for
end-to-end tests) or are synthetic bytes with a valid index footer (for the watcher's unit
tests, whose register callable only hashes files).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from lifecycle.register import checkpoints
from lifecycle.store.files import atomic_write_text

# The footer magic of a TF checkpoint index (see lifecycle.register.checkpoints).
_TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def synthetic_files(step: int, shards: int = 1, size: int = 64 * 1024) -> dict[str, bytes]:
    """Suffix -> bytes of a fake checkpoint that passes lifecycle.register.checkpoints' file checks."""
    seed = hashlib.sha256(f"step-{step}".encode()).digest()
    data = (seed * (size // len(seed) + 1))[:size]
    files = {f".data-{i:05d}-of-{shards:05d}": bytes([i]) + data for i in range(shards)}
    files[".index"] = seed + b"\0" * 16 + _TABLE_MAGIC  # 56 bytes: >= the 48-byte footer
    return files


def real_files(prefix: Path) -> dict[str, bytes]:
    """Suffix -> bytes of an existing checkpoint's index and data shards."""
    return {f.name[len(prefix.name):]: f.read_bytes() for f in checkpoints.checkpoint_files(prefix)}


def digest_of(name: str, files: dict[str, bytes]) -> str:
    """The content digest lifecycle.register.checkpoints gives ``files`` once written as ``name``."""
    h = hashlib.sha256()
    for suffix in sorted(files, key=lambda s: (s != ".index", s)):
        h.update(suffix.encode() + b"\0" + files[suffix] + b"\0")
    return "sha256:" + h.hexdigest()


@dataclass
class SimTrainer:
    """Writes checkpoints ``<name>-<step>`` into ``run_dir`` and keeps its ``checkpoint`` state file."""

    run_dir: Path
    name: str = "ckpt"
    written: list[str] = field(default_factory=list)
    digests: dict[str, str] = field(default_factory=dict)

    def prefix(self, step: int) -> Path:
        return self.run_dir / f"{self.name}-{step}"

    def write(
        self,
        step: int,
        files: dict[str, bytes] | None = None,
        chunks: int = 1,
        chunk_pause: float = 0.0,
        half_pause: float = 0.0,
        state_first: bool = False,
        index_first: bool = False,
        skip: tuple[str, ...] = (),
    ) -> Path:
        """Write checkpoint ``step``: data shards (in ``chunks``, pausing ``half_pause`` half-way), index, state.

        ``state_first`` names the checkpoint in the state file before writing any of its files,
        and ``index_first`` writes the index before the data, like a trainer that is not careful
        about order: then only the settle time keeps a reader from half-written data. ``skip`` leaves out files by suffix
        (an incomplete checkpoint).
        """
        files = files if files is not None else synthetic_files(step)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        prefix = self.prefix(step)
        self.digests[prefix.name] = digest_of(prefix.name, files)
        if state_first:
            self._name_in_state(prefix.name)
        data = sorted((s for s in files if s != ".index"), key=str)
        order = [".index", *data] if index_first else [*data, ".index"]
        for suffix in order:
            if suffix in skip:
                continue
            self._write_slowly(prefix.with_name(prefix.name + suffix), files[suffix], chunks, chunk_pause, half_pause)
        if not state_first:
            self._name_in_state(prefix.name)
        return prefix

    def write_file(self, step: int, suffix: str, data: bytes) -> None:
        """Write one more file of checkpoint ``step`` (e.g. a shard left out before)."""
        prefix = self.prefix(step)
        self._write_slowly(prefix.with_name(prefix.name + suffix), data, 1, 0.0, 0.0)

    def _name_in_state(self, name: str) -> None:
        if name not in self.written:
            self.written.append(name)
        lines = [f'model_checkpoint_path: "{self.written[-1]}"']
        lines += [f'all_model_checkpoint_paths: "{n}"' for n in self.written]
        atomic_write_text(self.run_dir / checkpoints.STATE_FILE, "\n".join(lines) + "\n")

    @staticmethod
    def _write_slowly(path: Path, data: bytes, chunks: int, chunk_pause: float, half_pause: float) -> None:
        if half_pause:
            pieces, pauses = [data[: len(data) // 2], data[len(data) // 2:]], [half_pause, 0.0]
        else:
            size = max(1, -(-len(data) // chunks))
            pieces = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
            pauses = [chunk_pause] * (len(pieces) - 1) + [0.0]
        with open(path, "wb") as f:
            for piece, pause in zip(pieces, pauses, strict=True):
                f.write(piece)
                f.flush()
                os.fsync(f.fileno())
                if pause:
                    time.sleep(pause)
