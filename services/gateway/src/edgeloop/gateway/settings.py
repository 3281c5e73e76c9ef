"""The gateway service's configuration (``EDGELOOP_*`` variables)."""

from __future__ import annotations

import socket
from typing import Literal

from edgeloop.gateway.decoding import INLINE_MAX_PIXELS
from edgeloop.gateway.validation import MAX_SIDE_PX
from edgeloop.platform import ServiceSettings
from pydantic import Field, ValidationInfo, field_validator

DEFAULT_PORT = 50050
MIB = 1024 * 1024


class Settings(ServiceSettings):
    """Configuration of the gateway service."""

    listen_addr: str = Field(default=f"127.0.0.1:{DEFAULT_PORT}",
                             description="host:port the gRPC server binds")
    registry_addr: str = Field(min_length=1, description="host:port of the registry service "
                               "(device auth, WatchDeployments); required")
    registry_token: str = Field(min_length=1, description="bearer token the gateway presents to "
                                "the registry (the registry's read or admin token); required")
    features_addr: str = Field(min_length=1, description="host:port of the features service "
                               "(observations are forwarded to its Ingest); required")
    model_host: Literal["embedded", "tfserving"] = Field(
        default="embedded", description="where models run: embedded (SavedModels in this "
        "process) or tfserving (TF Serving's PredictionService at EDGELOOP_TFSERVING_ADDR)")
    model_runtime: Literal["auto", "tensorflow"] = Field(
        default="auto", description="what runs a version in the embedded host: auto (its "
        "SavedModel under TensorFlow at once, then its TFLite file under LiteRT once the "
        "registry has published it and it agrees with the SavedModel: less CPU per frame at "
        "a fleet's rate) or tensorflow (the SavedModel only)")
    model_quantized: bool = Field(
        default=True, description="with EDGELOOP_MODEL_RUNTIME=auto, run a version's quantized "
        "TFLite file (weights int8, dynamic range; the registry writes it beside the float "
        "one) when its answers are within 1 mm of the SavedModel's: about half the model's "
        "CPU a frame for answers 0.04-0.19 mm apart on average; false = the float file. Also "
        "whether robots that declare quantized_model are offered a version's twin: once the "
        "embedded host runs it, or, behind TF Serving or Ray Serve, once the gateway checked "
        "it against the host's answers on the frames it served")
    model_repository: str = Field(default="", validate_default=True,
                                  description="folder of published models "
                                  "(<model>/<version>/ SavedModels); required when "
                                  "EDGELOOP_MODEL_HOST=embedded")
    tfserving_addr: str = Field(default="", validate_default=True,
                                description="host:port of TF Serving's gRPC API; "
                                "required when EDGELOOP_MODEL_HOST=tfserving")
    tfserving_deadline_s: float = Field(default=1.0, gt=0, le=300,
                                        description="deadline of one Predict attempt on TF "
                                        "Serving (or the Ray Serve model host), in seconds")
    spool_dir: str = Field(min_length=1, description="folder of the durable observation spool "
                           "(fsynced segment files); required")
    spool_max_bytes: int = Field(default=1024 * MIB, gt=0, description="capacity of the spool; "
                                 "when full, live frames are answered without a record "
                                 "(not_recorded) and the others refused with SPOOL_FULL")
    status_interval_s: float = Field(default=2.0, gt=0, le=3600, description="how often the "
                                     "gateway rewrites status.json in its spool folder (backlog, "
                                     "unrecorded answers, forwarding; `edgeloop status` shows "
                                     "it), in seconds")
    sample_interval_s: float = Field(
        default=10.0, ge=0, le=3600, description="how often the gateway sends the features "
        "service a sample of its spool, recording state and robots streaming, for Grafana's "
        "Infrastructure dashboard (features.gateway_samples), in seconds; 0 = none")
    samples_kept: int = Field(
        default=2160, gt=0, le=1_000_000, description="samples held in memory while the "
        "features service cannot take them (2160 = 6 hours at 10 s); older ones are dropped")
    spool_commit_wait_ms: float = Field(
        default=20.0, ge=0, le=1000, description="how long an observation that finds the spool "
        "writer idle waits for others before they are fsynced together, in milliseconds: fewer "
        "fsyncs per frame at a fleet's rate; Recorded messages come that much later, answers "
        "never wait for it; 0 = commit at once")
    max_streams_per_device: int = Field(
        default=4, ge=0, description="streams one device may hold open at once (a reconnect "
        "may briefly overlap the dead stream); more are refused; 0 = no limit")
    max_fps_per_device: float = Field(
        default=0.0, ge=0, description="live frames per second one device may send (bursts "
        "of one second's worth); faster frames get RATE_LIMITED, late ones are paced; 0 = no "
        "limit (the default: benchmarks and replays send at full speed; set it for a fleet)")
    max_frame_bytes: int = Field(default=2 * MIB, gt=0, le=32 * MIB,
                                 description="largest JPEG accepted per frame, in bytes")
    batch_max_size: int = Field(default=32, gt=0, le=1024,
                                description="largest micro-batch sent to the model host")
    batch_max_wait_ms: float = Field(default=2.0, ge=0, le=1000,
                                     description="longest a frame waits for its micro-batch "
                                     "to fill, in milliseconds")
    decode_inline_max_pixels: int = Field(
        default=INLINE_MAX_PIXELS, ge=0, le=MAX_SIDE_PX * MAX_SIDE_PX,
        description="frames of at most this many pixels (width x height, read from the JPEG "
        "header) decode on the event loop, larger ones on the decode threads: a 320x240 "
        "frame decodes in ~0.2 ms, less than a thread hop costs, while a large one would "
        "stall every stream as it decodes; 0 = every frame on the threads")
    forward_batch_size: int = Field(default=256, gt=0, le=10_000,
                                    description="observations per Ingest call to features")
    forward_interval_ms: float = Field(default=200.0, gt=0, le=60_000,
                                       description="longest an observation waits in the spool "
                                       "before it is forwarded, in milliseconds")
    gateway_id: str = Field(default_factory=socket.gethostname, description="names this gateway "
                            "instance in Welcome messages and logs (default: the host name)")

    @field_validator("model_repository")
    @classmethod
    def _embedded_needs_repository(cls, value: str, info: ValidationInfo) -> str:
        # Fail at start, naming the variable, rather than at the first frame.
        if info.data.get("model_host") == "embedded" and not value:
            raise ValueError("required when EDGELOOP_MODEL_HOST=embedded")
        return value

    @field_validator("max_frame_bytes")
    @classmethod
    def _frames_fit_in_a_request(cls, value: int, info: ValidationInfo) -> int:
        limit = info.data.get("max_request_bytes")
        if limit is not None and value >= limit:
            raise ValueError(f"must be below EDGELOOP_MAX_REQUEST_BYTES ({limit}): a frame "
                             "message carries its JPEG and a little more")
        return value

    @field_validator("tfserving_addr")
    @classmethod
    def _tfserving_needs_address(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("model_host") == "tfserving" and not value:
            raise ValueError("required when EDGELOOP_MODEL_HOST=tfserving")
        return value
