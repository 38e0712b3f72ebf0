"""Plain values of a torch checkpoint (``torch.save``'s zip format), read without torch.

The app lists character folders without loading them, and its own environment has no torch. A
checkpoint's small fields (RVC's ``version``, ``sr``, ``f0``, ``config``) sit in the zip's
``data.pkl`` next to the tensors; this reads that pickle with an allow-list like torch's own
weights-only loader, turning tensors into shapes and never touching their data. A global outside
the list (what an unsafe pickle needs to run code) is refused by name, before anything is built.
"""

from __future__ import annotations

import codecs
import io
import pickle
import zipfile
from dataclasses import dataclass
from typing import Any, Tuple

MAX_PICKLE_BYTES = 64 << 20
"""A checkpoint's object pickle is kilobytes; the weights are separate zip entries."""


class UnsafeCheckpointError(ValueError):
    """The pickle names a global that only arbitrary code execution needs."""


class UnreadableCheckpointError(ValueError):
    """Not a zip-format torch checkpoint, or its pickle is damaged."""


@dataclass(frozen=True)
class TensorShape:
    """What a tensor becomes here: its shape, no data."""

    shape: Tuple[int, ...]


class _Opaque:
    """A harmless stand-in for torch objects whose content the listing does not need (storages, dtypes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _rebuild_tensor(storage: Any, offset: Any, size: Any, *rest: Any) -> TensorShape:
    return TensorShape(tuple(int(n) for n in size))


def _rebuild_parameter(data: Any, *rest: Any) -> Any:
    return data


class _Dict(dict):  # type: ignore[type-arg]
    """An OrderedDict stand-in that takes the attributes torch pickles on state dicts (``_metadata``)."""


def _ordered_dict(*args: Any) -> _Dict:
    return _Dict(*args)


_TENSOR_BUILDERS = {
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("collections", "OrderedDict"): _ordered_dict,
    ("_codecs", "encode"): codecs.encode,  # how protocol-2 pickles carry bytes (numpy arrays' data); torch allows it too
}
_HARMLESS_TORCH_MODULES = ("torch", "torch.serialization", "torch._utils", "torch._tensor")


class _ListingUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        builder = _TENSOR_BUILDERS.get((module, name))
        if builder is not None:
            return builder
        harmless = (module == "torch" and (name.endswith("Storage") or name in ("Size", "device", "dtype"))) or (
            module in _HARMLESS_TORCH_MODULES and name in ("_get_layout", "_rebuild_from_type_v2")
        )
        # numpy arrays (cluster models keep their centers so) are data: rebuilt as opaque stand-ins
        harmless = harmless or (module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct") or (
            module == "numpy" and name in ("ndarray", "dtype")) or (module == "numpy.dtypes" and name.endswith("DType"))
        if harmless:
            return _Opaque
        raise UnsafeCheckpointError("%s.%s" % (module, name))

    def persistent_load(self, pid: Any) -> Any:
        return _Opaque()


def is_legacy_torch_file(path: str) -> bool:
    """A checkpoint from torch < 1.6 (pickle protocol 2, before the zip format): the worker's weights-only
    load reads it; its plain values cannot be listed from here."""
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x80\x02"


def read_plain_values(path: str) -> Any:
    """The checkpoint's top-level object with tensors as :class:`TensorShape` (dicts stay dicts)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = [info for info in archive.infolist() if info.filename.endswith("/data.pkl") or info.filename == "data.pkl"]
            if not entries:
                raise UnreadableCheckpointError("no data.pkl inside: not a torch checkpoint")
            if entries[0].file_size > MAX_PICKLE_BYTES:
                raise UnreadableCheckpointError("its object pickle is %d MB; refusing to read it" % (entries[0].file_size >> 20))
            payload = archive.read(entries[0])
    except zipfile.BadZipFile:
        raise UnreadableCheckpointError("not a zip-format torch checkpoint (damaged, or saved by a very old torch)") from None
    try:
        return _ListingUnpickler(io.BytesIO(payload)).load()
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean the same to a person
        raise UnreadableCheckpointError("its pickle is damaged (%s)" % type(exc).__name__) from None
