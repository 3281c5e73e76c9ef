"""Model hosts behind one interface: embedded SavedModels, TF Serving, micro-batching."""

from edgeloop.gateway.hosts.base import ModelHost, ModelKey, ModelUnavailable

__all__ = ["ModelHost", "ModelKey", "ModelUnavailable"]
