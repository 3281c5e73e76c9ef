"""open_model_host builds the configured host behind a MicroBatcher."""

from __future__ import annotations

import pytest
from edgeloop.gateway.hosts import (
    BatchingConfig,
    EmbeddedHost,
    HostConfig,
    MicroBatcher,
    TFServingConfig,
    TFServingHost,
    open_model_host,
    repository_key,
)
from edgeloop.platform.errors import ConfigError


async def test_embedded_host_serves_a_published_version(model_repo, make_images,
                                                        which_version) -> None:
    host = open_model_host(HostConfig(batching=BatchingConfig(max_batch_size=4)))
    try:
        assert isinstance(host, MicroBatcher) and isinstance(host.host, EmbeddedHost)
        key = repository_key(str(model_repo), "parking", "2", version_label="stable")
        assert key.path == str(model_repo / "parking" / "2")
        await host.ensure_loaded(key)
        assert which_version(await host.predict_one(key, make_images(1)[0])) == "2"
    finally:
        await host.close()


async def test_tfserving_host_gets_its_config() -> None:
    config = TFServingConfig(address="127.0.0.1:1")
    host = open_model_host(HostConfig(kind="tfserving", tfserving=config))
    assert isinstance(host.host, TFServingHost) and host.host.config is config
    await host.close()


def test_unknown_kind_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="EDGELOOP_MODEL_HOST.*embedded, tfserving"):
        open_model_host(HostConfig(kind="onnx"))
