"""Version selectors (exact version, alias, latest): validation and resolution."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from edgeloop.contracts.registry.v1 import deployment_pb2
from edgeloop.platform.errors import InvalidArgument

# Model names become folder names in the model repository: keep them path-safe.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
ALIAS = re.compile(r"^[A-Za-z0-9_-]{1,63}$")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)$")


def check_model_name(name: str, field_name: str = "model_name") -> str:
    """``name`` if it is a valid model name, else INVALID_ARGUMENT naming the field."""
    if not MODEL_NAME.match(name):
        raise InvalidArgument(field_name, f"{name!r} is not a model name (1-64 of A-Z a-z 0-9 "
                                          "_ . -, starting with a letter or digit)")
    return name


def check_alias(alias: str, field_name: str = "alias") -> str:
    """``alias`` if MLflow accepts it as an alias, else INVALID_ARGUMENT."""
    if not ALIAS.match(alias) or _RESERVED_ALIAS.match(alias):
        raise InvalidArgument(field_name, f"{alias!r} is not an alias (1-63 of A-Z a-z 0-9 _ -; "
                                          "not 'latest' or v<number>)")
    return alias


def check_version(version: str, field_name: str = "version") -> str:
    """``version`` if it is a positive version number, else INVALID_ARGUMENT."""
    if not version.isdigit() or int(version) < 1:
        raise InvalidArgument(field_name, f"{version!r} is not a version number")
    return str(int(version))


def check_selector(selector: deployment_pb2.VersionSelector, field_name: str,
                   required: bool) -> None:
    """Validate a selector; an unset one is an error when ``required``."""
    kind = selector.WhichOneof("kind")
    if kind is None:
        if required:
            raise InvalidArgument(field_name, "set one of version, alias or latest")
        return
    if kind == "version":
        check_version(selector.version, f"{field_name}.version")
    elif kind == "alias":
        check_alias(selector.alias, f"{field_name}.alias")
    elif not selector.latest:
        raise InvalidArgument(f"{field_name}.latest", "must be true when set")


def describe(selector: deployment_pb2.VersionSelector) -> str:
    """A selector as text: "3", "@champion", "latest" or "-"."""
    kind = selector.WhichOneof("kind")
    if kind == "version":
        return selector.version
    if kind == "alias":
        return f"@{selector.alias}"
    return "latest" if kind == "latest" else "-"


@dataclass(frozen=True)
class ModelState:
    """What the model registry holds for one model right now."""

    versions: frozenset[int] = frozenset()
    aliases: dict[str, int] = field(default_factory=dict)

    @property
    def latest(self) -> int | None:
        """The highest version, if any."""
        return max(self.versions) if self.versions else None

    def resolve(self, selector: deployment_pb2.VersionSelector) -> str:
        """The version ``selector`` names now, or '' when it matches nothing."""
        kind = selector.WhichOneof("kind")
        if kind == "version":
            return selector.version if int(selector.version) in self.versions else ""
        if kind == "alias":
            version = self.aliases.get(selector.alias)
            return str(version) if version is not None else ""
        if kind == "latest" and self.latest is not None:
            return str(self.latest)
        return ""
