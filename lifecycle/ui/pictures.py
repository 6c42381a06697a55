"""Pictures for the model page, computed lazily and cached under the home's ``.mlc/ui/``.

- A version's **mask** and **overlay** of the test image: the version is loaded in this process
  with the embedded server's loader, as ``mlc diff`` loads it (:mod:`lifecycle.predictions.diff`),
  and its mask written with the same picture code as ``mlc predict``.
- Two versions **side by side**: :func:`lifecycle.api.diff` itself, its pictures and numbers.

TensorFlow is imported here on the first picture only, so the page itself never waits for it.
Cache entries are keyed by what they depend on (the version's files, the model definition, the
test image), written to a temporary folder and renamed into place, so a reader never sees half
an entry and two ``mlc ui`` processes on one home cannot corrupt each other. Nothing is ever
written into ``model_repo/``: published versions never change.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from lifecycle.errors import ConfigError, LifecycleError
from lifecycle.store import registry
from lifecycle.store.config import SEGMENTATION, Paths, load_definition, validation_settings

CACHE = "ui"  # the UI's folder under the home's private state folder (.mlc/)
VERSION_PICTURES = ("mask.png", "overlay.png")

# One model computation at a time: each loads whole SavedModels, and a page asks for every
# version's pictures at once.
_compute = threading.Lock()


def cache_dir(paths: Paths) -> Path:
    """.mlc/ui/: where the UI keeps what it computed."""
    return paths.state_dir / CACHE


def test_image(paths: Paths, model: str) -> Path:
    """The test image of configs/<model>.yaml; ConfigError says why a model has none."""
    return validation_settings(load_definition(paths, model)).test_image


def unavailable(paths: Paths, model: str) -> tuple[str | None, str | None]:
    """Why the model page can show no masks, and why it can compare no versions (None: it can)."""
    try:
        definition = load_definition(paths, model)
        validation_settings(definition)
    except LifecycleError as e:
        return f"No test image: {e.message}", "mlc diff compares versions on the test image, which this model lacks (see above)."
    if definition.task != SEGMENTATION:
        return f"A {definition.task} model answers classes, not masks: compare two versions below.", None
    return None, None


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _version_stamp(paths: Paths, model: str, version: int) -> bytes:
    """What identifies a published version's content: its registry record's digest and time."""
    record = registry.load(paths).model(model).version(version)  # VersionNotFound for an unknown one
    return f"{record.version}:{record.checkpoint_digest}:{record.created}".encode()


def _definition_stamp(paths: Paths, model: str) -> bytes:
    image = test_image(paths, model)
    try:
        return paths.definition_file(model).read_bytes() + image.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the test image of configs/{model}.yaml: {e}") from e


def _publish(folder: Path, fill: Any) -> Path:
    """Create cache entry ``folder`` by filling a temporary sibling and renaming it into place."""
    if folder.exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=folder.parent))
    try:
        fill(staging)
        try:
            staging.rename(folder)
        except OSError:
            if not folder.exists():  # not a lost race with another mlc ui: a real failure
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def version_picture(paths: Paths, model: str, version: int, name: str) -> Path:
    """``mask.png`` or ``overlay.png`` of the test image by ``version``, computed on first use."""
    if name not in VERSION_PICTURES:
        raise ValueError(f"no picture {name!r}")  # the router only asks for these
    key = _digest(_version_stamp(paths, model, version), _definition_stamp(paths, model))
    folder = cache_dir(paths) / "versions" / model / f"{version}-{key}"
    if not folder.exists():
        with _compute:
            _publish(folder, lambda staging: _segment_test_image(paths, model, version, staging))
    return folder / name


def _segment_test_image(paths: Paths, model: str, version: int, into: Path) -> None:
    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()  # quietly, before the loader pulls it in

    import numpy as np

    from lifecycle.predictions import pictures
    from lifecycle.predictions.diff import loaded

    definition = load_definition(paths, model)
    photo = pictures.read_photo(test_image(paths, model))
    signature, output = definition.signature.key, definition.signature.outputs[0].name
    # The store gives a local folder of the complete version (the folder itself, or a verified copy).
    with loaded(model, version, paths.store.version_path(model, version), signature, output) as v:
        mask = v.segment(photo[None].astype(np.float32))[0]
    pictures.write_png(into / "mask.png", pictures.mask_image(mask))
    pictures.write_png(into / "overlay.png", pictures.overlay(photo, mask))


def version_diff(paths: Paths, model: str, a: int, b: int) -> tuple[dict[str, Any], Path]:
    """``mlc diff MODEL A B`` as plain data, and the folder holding its pictures; cached."""
    key = _digest(_version_stamp(paths, model, a), _version_stamp(paths, model, b), _definition_stamp(paths, model))
    folder = cache_dir(paths) / "diffs" / model / f"{a}-vs-{b}-{key}"
    if not folder.exists():
        with _compute:
            _publish(folder, lambda staging: _diff_into(paths, model, a, b, staging))
    result = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    return result, folder


def _diff_into(paths: Paths, model: str, a: int, b: int, into: Path) -> None:
    from lifecycle import api
    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()
    data = api.diff(model, a, b, out=into, paths=paths).to_dict()
    for image in data["images"]:  # the folder is renamed into place: keep names, not paths
        image["picture"] = Path(image["picture"]).name
    (into / "result.json").write_text(json.dumps(data, indent=1), encoding="utf-8")


def diff_picture(paths: Paths, model: str, a: int, b: int, index: int) -> Path | None:
    """The ``index``-th picture of the (cached) diff of A and B; None if it has no such picture."""
    result, folder = version_diff(paths, model, a, b)
    images = result["images"]
    if not 0 <= index < len(images):
        return None
    return folder / Path(images[index]["picture"]).name


def version_card(paths: Paths, model: str, version: int) -> Path:
    """The HTML model card of ``version`` (``mlc card``), made on first use and again when what it shows changes."""
    from lifecycle.predictions import card

    shown = json.dumps(card.collect(paths, model, version), sort_keys=True, default=str).encode()  # VersionNotFound
    try:
        definition = paths.definition_file(model).read_bytes() + test_image(paths, model).read_bytes()
    except (LifecycleError, OSError):
        definition = b""  # no test image: the card says why it has no pictures
    folder = cache_dir(paths) / "cards" / model / f"{version}-{_digest(shown, definition)}"
    if not folder.exists():
        with _compute:
            _publish(folder, lambda staging: _card_into(paths, model, version, staging))
    return folder / "card.html"


def _card_into(paths: Paths, model: str, version: int, into: Path) -> None:
    from lifecycle import api
    from lifecycle.tf_import import import_tensorflow

    import_tensorflow()  # quietly, before the card loads the version for its pictures
    written = api.card(model, version, out=into, paths=paths)
    Path(written.html).rename(into / "card.html")  # the folder is renamed into place: a fixed name
