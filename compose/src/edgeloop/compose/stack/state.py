"""What `edgeloop up` records in the state folder: running parts and generated secrets."""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class PartRecord:
    """One started part: where it listens, its process and its log."""

    name: str
    address: str
    pid: int | None
    log: str
    kind: str = "grpc"
    """How to probe it: grpc (health service), http (GET url), postgres, process (alive),
    ray (the head's dashboard with the token in ``token_file``), serve (Ray Serve's gRPC
    proxy)."""
    url: str = ""
    token_file: str = ""
    restarts: int = 0
    """How often the supervisor started it again after it died."""
    last_restart: str = ""


@dataclass
class StackState:
    """The state file ``<state>/stack.json``."""

    parts: dict[str, PartRecord] = field(default_factory=dict)
    postgres_data_dir: str = ""
    postgres_port: int = 0
    tls: dict[str, str] = field(default_factory=dict)
    """Client TLS variables of the stack (EDGELOOP_TLS_CA, ...); empty when plaintext."""

    @classmethod
    def load(cls, state_dir: Path) -> StackState:
        path = state_dir / "stack.json"
        if not path.exists():
            return cls()
        raw = json.loads(path.read_text())
        parts = {name: PartRecord(**record) for name, record in raw.get("parts", {}).items()}
        return cls(parts=parts, postgres_data_dir=raw.get("postgres_data_dir", ""),
                   postgres_port=raw.get("postgres_port", 0), tls=raw.get("tls", {}))

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        data = {"parts": {n: asdict(p) for n, p in self.parts.items()},
                "postgres_data_dir": self.postgres_data_dir, "postgres_port": self.postgres_port,
                "tls": self.tls}
        tmp = state_dir / "stack.json.tmp"
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(state_dir / "stack.json")


SECRETS_FILE = "secrets.json"
"""Written by the first `edgeloop up` of a state folder, before PostgreSQL starts."""
SECRET_NAMES = ("admin_token", "read_token", "webhook_secret", "trainer_token")
"""The stack's secrets; ``trainer_token`` is the trainer's own registry token (its changes
are recorded as ``service:trainer``)."""


def load_or_create_secrets(state_dir: Path) -> dict[str, str]:
    """The stack's tokens (admin, read, webhook, trainer), generated once and kept private
    (mode 600); a secret added in a later release is generated into an existing file."""
    path = state_dir / SECRETS_FILE
    values = json.loads(path.read_text()) if path.exists() else {}
    missing = [name for name in SECRET_NAMES if name not in values]
    if not missing:
        return values
    values.update({name: secrets.token_urlsafe(24) for name in missing})
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / "secrets.json.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(values, out, indent=2)
    tmp.replace(path)
    return values
