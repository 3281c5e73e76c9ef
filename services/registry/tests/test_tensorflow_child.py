"""The registry process never imports TensorFlow: its TFLite conversions run in a child
process that ends when idle (the signature check reads protobuf: test_signatures.py)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import psutil
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.testing import modules_imported


def _children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True)
            if "--multiprocessing-fork" in p.cmdline()]


def test_the_registry_process_does_not_import_tensorflow(tmp_path: Path) -> None:
    """The service's whole module graph, TF Serving's config file and reload client included,
    without TensorFlow (~600 MiB RSS it would hold for its whole life)."""
    code = """
        import edgeloop.registry.app, edgeloop.registry.models, edgeloop.registry.service
        import edgeloop.registry.tfserving
        from edgeloop.registry import hostconfig, resolution

        text = hostconfig.render(hostconfig.build(resolution.Resolution([], {}, []), "/models"))
        assert "model_config_list" in text, text
    """
    assert modules_imported(code, ("tensorflow", "keras"), tmp_path)[:5] == []


async def test_conversions_run_in_a_child_that_ends_when_idle(registry_factory, mlflow_store,
                                                              tmp_path: Path) -> None:
    async with registry_factory(tmp_path / "repository", tensorflow_idle_s=0.5) as registry:
        model = f"dist-{uuid.uuid4().hex[:6]}"
        before = {p.pid for p in _children()}  # other registries' in this test process
        reply = await registry.stub.RegisterModelVersion(pb.RegisterModelVersionRequest(
            model_name=model, run_id=mlflow_store.good_run), metadata=registry.admin(),
            timeout=120)
        children = [p.pid for p in _children() if p.pid not in before]
        await registry.app.models.wait_conversions()
        assert (registry.repository / model / f"{reply.version.version}.tflite").exists()
        assert len(children) == 1, "one child converts"
        deadline = asyncio.get_running_loop().time() + 60
        while psutil.pid_exists(children[0]):
            assert asyncio.get_running_loop().time() < deadline, "the idle child stayed"
            await asyncio.sleep(0.05)
        assert not registry.app.models.tensorflow.alive
