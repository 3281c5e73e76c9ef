"""The robot loop on real hardware: capture, range, stream, decide, signal.

One run: frames are captured at ``fps``, each with the range sensor's reading, streamed to
the gateway, and the parking controller decides from the prediction (or the sensor) until
it stops. Motor control is outside edgeloop: the decision is signalled (buzzer, LED) and
logged, and the driver (or the car's own motor controller) acts on it.
"""

from __future__ import annotations

import asyncio
import logging
import time

from edgeloop.edge_client.camera.base import Camera, RangeSensor
from edgeloop.edge_client.control.parking import Decision, Mode, ParkingController
from edgeloop.edge_client.inference.litert import DeviceAnswer
from edgeloop.edge_client.inference.onboard import Inference, Onboard, as_proto
from edgeloop.edge_client.stream.client import StreamClient
from edgeloop.edge_client.summary import DeliverySummary, summarise
from edgeloop.platform import log_context

log = logging.getLogger(__name__)
SUMMARY_WAIT_S = 5.0
"""How long a finished run waits for answers still on their way before summarising."""


async def run_robot(camera: Camera, sensor: RangeSensor, client: StreamClient,
                    controller: ParkingController, fps: float = 4.0,
                    max_frames: int = 10_000,
                    onboard: Onboard | None = None) -> tuple[Decision | None, DeliverySummary]:
    """Drive one run until the controller stops (or ``max_frames``); summarise it.

    With ``onboard`` predicting on the device, the controller steers by the robot's own
    LiteRT answer (gateway up or down) and the frame carries it up the stream.
    """
    onboard = onboard or Onboard(Inference.SERVER)
    period = 1.0 / fps
    seqs: list[int] = []
    sensors: dict[int, float | None] = {}
    decision: Decision | None = None
    tick = time.monotonic()
    with log_context(device=client.device_id, session=client.session_id):
        for _ in range(max_frames):
            jpeg = await asyncio.to_thread(camera.capture_jpeg)
            mm = await asyncio.to_thread(sensor.read_mm)
            answer = await onboard.predict(jpeg)
            seq = client.send(jpeg, mm, device_prediction=as_proto(answer))
            seqs.append(seq)
            sensors[seq] = mm
            decision = await _decide(client, controller, seq, mm, period, onboard.on_device,
                                     answer)
            log.info("frame", extra={"seq": seq, "sensor_mm": mm,
                                     "distance_mm": decision.distance_mm,
                                     "source": decision.source, "speed_mm_s": decision.speed_mm_s})
            if decision.stop:
                break
            # Late captures move the schedule rather than bursting to catch up.
            tick = max(tick + period, time.monotonic())
            await asyncio.sleep(tick - time.monotonic())
    # The car has stopped: the last answers may take their time (a busy gateway), and a
    # summary that counted them as missing would be wrong. Offline, they never come: the
    # wait is bounded.
    results = await client.results_for(seqs, timeout=max(2 * period, SUMMARY_WAIT_S))
    return decision, summarise(seqs, sensors, results)


async def _decide(client: StreamClient, controller: ParkingController, seq: int,
                  sensor_mm: float | None, period: float, on_device: bool,
                  answer: DeviceAnswer | None) -> Decision:
    if controller.mode is Mode.SENSOR:
        return controller.decide(sensor_mm)
    if on_device:
        return controller.decide(sensor_mm, answer.distance_mm if answer else None,
                                 answer.inference_ms / 1000 if answer else None)
    sent = time.monotonic()
    # Waiting longer than one frame period would delay the next capture.
    result = await client.result(seq, timeout=period * 0.9)
    prediction = result.distance_mm if result is not None else None
    return controller.decide(sensor_mm, prediction, time.monotonic() - sent)
