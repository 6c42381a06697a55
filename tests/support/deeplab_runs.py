"""What the training session fixtures of conftest.py hand to tests: trained runs and a served DeepLab home."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lifecycle.store.config import Paths

# tiny_run: the small backbone trained for TINY_STEPS steps, a checkpoint every TINY_SAVE_EVERY.
TINY_STEPS = 60
TINY_SAVE_EVERY = 20


@dataclass(frozen=True)
class TrainedRun:
    """A run folder of checkpoints at increasing steps, as ``mlc train`` writes it."""

    run_dir: Path
    steps: tuple[int, ...]

    def prefix(self, step: int) -> Path:
        """The checkpoint prefix of ``step`` (``run_dir/ckpt-<step>``)."""
        return self.run_dir / f"ckpt-{step}"

    @property
    def prefixes(self) -> list[Path]:
        """Prefixes in step order; the last is what the run folder itself names."""
        return [self.prefix(s) for s in self.steps]


# tiny_run: small-backbone DeepLab; shapes_run: the shapes classifier (configs/shapes.yaml).
TinyRun = TrainedRun
ShapesRun = TrainedRun


@dataclass(frozen=True)
class ServedDeeplab:
    """A home with deeplab versions 1, 2, 3 and an in-process mlc-model-server serving them.

    Labels: ``stable`` -> 2, ``canary`` -> 3. The server is listed in ``configs/servers.yaml``,
    so commands find it by default. Shared by the session: do not change the home or the server.
    """

    paths: Paths
    grpc: str
    rest: str
