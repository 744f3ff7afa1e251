"""Loads the generated grpc.testing stubs for the interop scripts.

The stubs come from tools/interop/generate.sh. Either pass the directory it
wrote (``--stubs DIR``) or let ``load`` run the script into a temporary
directory with the current interpreter (which then needs grpcio-tools).

The generated modules import each other as ``grpc.testing.<name>_pb2``
because the protos live at grpc/testing/*.proto. ``grpc`` is grpcio's own
package, which has no ``testing`` subpackage, so the stub directory's
``grpc/`` folder is appended to ``grpc.__path__``: ``grpc.testing`` then
resolves (as a namespace package) to the generated files, and the generated
code is used exactly as protoc wrote it.
"""

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import grpc

_HERE = os.path.dirname(os.path.abspath(__file__))


def _generate() -> str:
    out = tempfile.mkdtemp(prefix="interop-stubs-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    env = dict(os.environ, PYTHON=sys.executable)
    subprocess.run(
        ["bash", os.path.join(_HERE, "generate.sh"), out], check=True, env=env
    )
    return out


def load(stubs_dir=None) -> SimpleNamespace:
    """Returns a namespace with the empty_pb2, messages_pb2, test_pb2_grpc modules."""
    stubs_dir = os.path.abspath(stubs_dir) if stubs_dir else _generate()
    package_dir = os.path.join(stubs_dir, "grpc")
    if not os.path.isfile(os.path.join(package_dir, "testing", "test_pb2_grpc.py")):
        raise SystemExit(f"no generated stubs in {stubs_dir} (run generate.sh first)")
    if package_dir not in grpc.__path__:
        grpc.__path__.append(package_dir)

    from grpc.testing import empty_pb2, messages_pb2, test_pb2_grpc  # noqa: E402

    return SimpleNamespace(
        empty_pb2=empty_pb2, messages_pb2=messages_pb2, test_pb2_grpc=test_pb2_grpc
    )
