"""Fuzzing deployment definitions (Hypothesis): CreateDeployment and UpdateDeployment.

A real registry (in-process on loopback, real PostgreSQL and MLflow store from the
conftest) gets arbitrary deployments: names, model names, strategies (also unknown enum
numbers), selectors, challengers, canary fractions (NaN, infinities, negatives), arms,
descriptions, expected revisions. Properties: every call ends within its deadline; a
refusal has a documented status whose message starts with the field it is about
(INVALID_ARGUMENT ``deployment.<field>``, ALREADY_EXISTS ``deployment.name``,
NOT_FOUND ``deployment.name``, FAILED_PRECONDITION ``expected_revision``); an accepted
deployment reads back as it was stored; the registry answers health SERVING afterwards.
Examples are derandomized and few.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from edgeloop.contracts.registry.v1 import deployment_pb2 as dpb
from edgeloop.contracts.registry.v1 import registry_service_pb2 as pb
from edgeloop.contracts.registry.v1 import registry_service_pb2_grpc as pb_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])
CALL_DEADLINE_S = 60.0

names = st.one_of(st.sampled_from(["parking", "garage", "p-1", ""]), st.text(max_size=70))
selectors = st.one_of(
    st.none(),
    st.builds(lambda v: dpb.VersionSelector(version=v),
              st.one_of(st.sampled_from(["1", "2", "0", "-1"]), st.text(max_size=8))),
    st.builds(lambda a: dpb.VersionSelector(alias=a),
              st.one_of(st.sampled_from(["champion", "latest"]), st.text(max_size=20))),
    st.builds(lambda latest: dpb.VersionSelector(latest=latest), st.booleans()),
)


@st.composite
def deployments(draw: Any) -> dpb.Deployment:
    deployment = dpb.Deployment(
        name=draw(names),
        model_name=draw(st.one_of(st.sampled_from(["distance", "", "../x"]),
                                  st.text(max_size=20))),
        data_group=draw(st.text(max_size=20)),
        strategy=draw(st.integers(0, 6)),
        canary_fraction=draw(st.floats()),
        active=draw(st.booleans()),
        description=draw(st.text(max_size=1100).filter(lambda t: len(t) < 40 or len(t) > 990)),
        revision=draw(st.integers(0, 2**64 - 1)),
    )
    for field in ("selector", "challenger"):
        selector = draw(selectors)
        if selector is not None:
            getattr(deployment, field).CopyFrom(selector)
    for _ in range(draw(st.integers(0, 4))):
        arm = deployment.arms.add(name=draw(st.one_of(st.sampled_from(["a", "b", "a"]),
                                                      st.text(max_size=12))))
        selector = draw(selectors)
        if selector is not None:
            arm.selector.CopyFrom(selector)
    return deployment


REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT: ("deployment.",),
    grpc.StatusCode.ALREADY_EXISTS: ("deployment.name:",),
    grpc.StatusCode.NOT_FOUND: ("deployment.name:", "name:"),
    grpc.StatusCode.FAILED_PRECONDITION: ("expected_revision:",),
}


def _check_refusal(exc: grpc.RpcError) -> None:
    code, details = exc.code(), exc.details() or ""
    assert code in REFUSALS, (code, details)
    assert details.startswith(REFUSALS[code]), (code, details)


def check_definition(address: str, admin: Any, deployment: dpb.Deployment, update: bool,
                     expected_revision: int) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = pb_grpc.RegistryServiceStub(channel)
        try:
            if update:
                stored = stub.UpdateDeployment(pb.UpdateDeploymentRequest(
                    deployment=deployment, expected_revision=expected_revision),
                    metadata=admin, timeout=CALL_DEADLINE_S).deployment
            else:
                stored = stub.CreateDeployment(pb.CreateDeploymentRequest(
                    deployment=deployment), metadata=admin, timeout=CALL_DEADLINE_S).deployment
        except grpc.RpcError as exc:
            _check_refusal(exc)
        else:
            assert stored.name == deployment.name and stored.revision >= 1
            listed = stub.ListDeployments(pb.ListDeploymentsRequest(), metadata=admin,
                                          timeout=CALL_DEADLINE_S)
            assert [d for d in listed.deployments if d.name == stored.name] == [stored]
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                           timeout=30)
        assert health.status == health_pb2.HealthCheckResponse.SERVING


async def test_arbitrary_deployment_definitions_are_stored_or_refused_naming_the_field(
        registry) -> None:
    admin = registry.admin()

    @FUZZ
    @given(deployments(), st.booleans(), st.one_of(st.integers(0, 3),
                                                   st.integers(0, 2**64 - 1)))
    @example(dpb.Deployment(name="parking", model_name="distance", strategy=dpb.STRATEGY_CANARY,
                            selector=dpb.VersionSelector(latest=True),
                            challenger=dpb.VersionSelector(latest=True),
                            canary_fraction=float("nan")), False, 0)
    @example(dpb.Deployment(name="parking", strategy=99), True, 1)
    def fuzz(deployment: dpb.Deployment, update: bool, expected_revision: int) -> None:
        check_definition(registry.address, admin, deployment, update, expected_revision)

    await asyncio.to_thread(fuzz)
