"""The stack's secrets: made once, private, and completed when a release adds one."""

from __future__ import annotations

import json
from pathlib import Path

from edgeloop.compose.stack.state import SECRET_NAMES, load_or_create_secrets


def test_secrets_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = load_or_create_secrets(tmp_path)
    assert set(first) == set(SECRET_NAMES) and len(set(first.values())) == len(first)
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
    assert load_or_create_secrets(tmp_path) == first


def test_an_older_state_folder_gets_the_missing_secret_and_keeps_its_tokens(tmp_path: Path
                                                                           ) -> None:
    older = {"admin_token": "admin-" * 4, "read_token": "read-" * 4, "webhook_secret": "hook" * 4}
    (tmp_path / "secrets.json").write_text(json.dumps(older))
    (tmp_path / "secrets.json").chmod(0o600)
    upgraded = load_or_create_secrets(tmp_path)
    assert {k: upgraded[k] for k in older} == older
    assert len(upgraded["trainer_token"]) >= 16
    assert json.loads((tmp_path / "secrets.json").read_text()) == upgraded
    assert (tmp_path / "secrets.json").stat().st_mode & 0o777 == 0o600
