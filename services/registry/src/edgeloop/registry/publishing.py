"""Publishing a version to the model repository: SavedModel folder and TFLite file.

Layout (CONTRIBUTING "Model repository"): ``<repository>/<model>/<version>/`` is the
SavedModel (TF Serving's layout) and ``<repository>/<model>/<version>.tflite`` the TFLite
file (robots fetch it), ``<version>.quantized.tflite`` its dynamic-range quantized twin (the
gateway's LiteRT runs it: half the CPU a frame, answers within a millimetre). Files appear
atomically (written beside, then renamed), so a model host polling the folder never sees a
half-copied version. What needs TensorFlow (the signature check, the TFLite conversion) is
in :mod:`edgeloop.registry.saved_models`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

from edgeloop.platform.errors import InvalidArgument
from mlflow.models import Model

log = logging.getLogger(__name__)


def find_saved_model(model_dir: Path) -> Path:
    """The SavedModel inside an MLflow model directory.

    The trainer logs it as the pyfunc artifact ``saved_model``; a model logged another
    way is accepted when its directory holds exactly one ``saved_model.pb``.
    """
    mlmodel = model_dir / "MLmodel"
    if mlmodel.exists():
        pyfunc = Model.load(str(mlmodel)).flavors.get("python_function", {})
        entry = (pyfunc.get("artifacts") or {}).get("saved_model")
        if entry and (model_dir / entry["path"] / "saved_model.pb").exists():
            return model_dir / entry["path"]
    found = sorted(p.parent for p in model_dir.rglob("saved_model.pb"))
    if len(found) != 1:
        raise InvalidArgument("run_id", f"the model has {len(found)} SavedModels; expected the "
                              "pyfunc artifact 'saved_model' (see CONTRIBUTING 'Model in MLflow')")
    return found[0]


def version_dir(repository: Path, model: str, version: str) -> Path:
    """Where a version's SavedModel is published."""
    return repository / model / version


def tflite_path(repository: Path, model: str, version: str) -> Path:
    """Where a version's TFLite file is published."""
    return repository / model / f"{version}.tflite"


def quantized_tflite_path(repository: Path, model: str, version: str) -> Path:
    """Where a version's dynamic-range quantized TFLite file (the gateway's) is published."""
    return repository / model / f"{version}.quantized.tflite"


def publish_saved_model(saved_model: Path, repository: Path, model: str, version: str) -> Path:
    """Copy the SavedModel to ``<repository>/<model>/<version>/``; replace a stale copy."""
    target = version_dir(repository, model, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name keeps TF Serving from taking the half-copied folder for a version.
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        shutil.copytree(saved_model, staging, dirs_exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
