"""Regenerate the Python stubs of edgeloop's contracts.

The proto packages are ``edgeloop.<service>.v1``; the generated modules live under
``edgeloop.contracts.<service>.v1`` so that a proto package can never collide with
a service package of the same name (``edgeloop.features`` is the service). protoc
writes imports by proto path, so they are rewritten to the ``contracts`` namespace.

Usage: ``uv run python proto/generate.py`` (``--check`` fails if the committed stubs differ).
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
OUTPUT_ROOT = PROTO_ROOT / "python" / "edgeloop" / "contracts"
IMPORT_PATTERN = re.compile(r"^(from|import) edgeloop\.(\w+)\.v1", re.MULTILINE)
PACKAGE_DOC = '"""Generated gRPC contracts of edgeloop. Do not edit: run proto/generate.py."""\n'


def _proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.glob("edgeloop/*/v1/*.proto"))


def _run_protoc(out_dir: Path) -> None:
    include = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--python_out={out_dir}",
        f"--pyi_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        *_proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def _rewrite_imports(root: Path) -> None:
    for path in root.rglob("*.py*"):
        text = path.read_text()
        path.write_text(IMPORT_PATTERN.sub(r"\1 edgeloop.contracts.\2.v1", text))


def _add_package_markers(root: Path) -> None:
    for directory in [root, *[p for p in root.rglob("*") if p.is_dir()]]:
        (directory / "__init__.py").write_text(PACKAGE_DOC)
    (root / "py.typed").write_text("")


def generate(target: Path) -> None:
    """Generate all stubs into ``target`` (the ``edgeloop/contracts`` package folder)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        _run_protoc(out)
        generated = out / "edgeloop"
        _rewrite_imports(generated)
        _add_package_markers(generated)
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(generated, target)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and "__pycache__" not in p.parts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if the committed stubs are stale")
    args = parser.parse_args()
    if not args.check:
        generate(OUTPUT_ROOT)
        print(f"generated {len(_proto_files())} proto files into "
              f"{OUTPUT_ROOT.relative_to(PROTO_ROOT.parent)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "contracts"
        generate(fresh)
        if _tree(fresh) != _tree(OUTPUT_ROOT):
            print("generated stubs are stale: run `uv run python proto/generate.py` and commit",
                  file=sys.stderr)
            return 1
    print("generated stubs are up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
