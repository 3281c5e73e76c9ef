"""RPCs that are part of a contract but not built yet answer UNIMPLEMENTED, saying when.

``class Servicer(pending(FooServicer, FOO_DESCRIPTOR, "issue #6")): ...`` gives every
RPC the subclass does not define a handler of the right shape that raises
:class:`~edgeloop.platform.errors.Unimplemented` naming the work that brings it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from edgeloop.platform.errors import Unimplemented
from google.protobuf.descriptor import ServiceDescriptor


def _unary(rpc: str, arrives_with: str) -> Callable[..., Any]:
    async def handler(self: Any, request: Any, context: Any) -> Any:
        raise Unimplemented(rpc, arrives_with)

    return handler


def _streaming(rpc: str, arrives_with: str) -> Callable[..., Any]:
    async def handler(self: Any, request: Any, context: Any) -> AsyncIterator[Any]:
        raise Unimplemented(rpc, arrives_with)
        yield  # pragma: no cover - makes this an async generator

    return handler


def pending(base: type, service: ServiceDescriptor, arrives_with: str) -> type:
    """A subclass of the generated ``base`` servicer whose RPCs answer UNIMPLEMENTED."""
    methods = {}
    for method in service.methods:
        rpc = f"{service.full_name}/{method.name}"
        make = _streaming if method.server_streaming else _unary
        methods[method.name] = make(rpc, arrives_with)
    return type(f"Pending{base.__name__}", (base,), methods)
