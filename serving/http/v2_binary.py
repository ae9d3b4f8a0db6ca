"""KServe V2's binary tensor data extension, both ways (what Triton's own clients send by default).

A request may carry a JSON header followed by raw tensors: the header's length is in the
`Inference-Header-Content-Length` HTTP header, and each input holding its data there says so with
`parameters.binary_data_size` instead of `data` (little-endian, row-major, in the order of
`inputs`). An answer is binary the same way when the request asks for it
(`parameters.binary_data_output`, or an output's `parameters.binary_data`). The body is read
whatever its Content-Type says: tritonclient sends JSON with none at all.
"""

from __future__ import annotations

import json
import math

import numpy as np
import orjson

HEADER_LENGTH = "inference-header-content-length"
DTYPES = {"FP32": "<f4", "FP64": "<f8", "INT32": "<i4", "INT64": "<i8"}


class BadBinary(Exception):
    """422: the message names the field."""


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_json(text: bytes) -> object:
    """orjson (fast); what it refuses but JSON allows (integers past 64 bits, which the value
    checks then name) through the standard library; ValueError when it is not JSON at all."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_constant=_reject_constant)  # no NaN / Infinity literals


def split_body(body: bytes, header_length: str | None) -> tuple[object, bytes]:
    """(parsed JSON header, binary rest); raises BadBinary, or ValueError for a body that is not JSON."""
    if header_length is None:
        return parse_json(body), b""
    if not header_length.isascii() or not header_length.isdigit() or int(header_length) > len(body):
        raise BadBinary(f"{HEADER_LENGTH}: must be the byte length of the JSON header within the body")
    n = int(header_length)
    return parse_json(body[:n]), body[n:]


class BinaryInputs:
    """Hands out each binary input's bytes in order, checking every byte is used exactly once."""

    def __init__(self, data: bytes) -> None:
        self.data, self.offset = memoryview(data), 0

    def take(self, i: int, size: object, datatype: str, shape: list[int]) -> np.ndarray:
        field = f"inputs[{i}].parameters.binary_data_size"
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadBinary(f"{field}: must be a byte count")
        if datatype == "BYTES":
            return self.take_strings(i, size, shape)
        dtype = DTYPES.get(datatype)
        if dtype is None:
            raise BadBinary(f"inputs[{i}].datatype: must be one of {', '.join(DTYPES)}, BYTES")
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if any(d < 1 for d in shape) or size != expected:
            raise BadBinary(f"{field}: {size} bytes, the shape and datatype need {expected}")
        if self.offset + size > len(self.data):
            raise BadBinary(f"{field}: the body holds fewer binary bytes than the inputs declare")
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return np.frombuffer(chunk, dtype=dtype).reshape(shape)

    def take_strings(self, i: int, size: int, shape: list[int]) -> np.ndarray:
        """BYTES elements as the extension lays them out: each a 4-byte little-endian length, then
        that many bytes (UTF-8 text here: categories)."""
        field = f"inputs[{i}].parameters.binary_data_size"
        if any(d < 1 for d in shape) or self.offset + size > len(self.data):
            raise BadBinary(f"{field}: the body holds fewer binary bytes than the inputs declare")
        chunk, at, out = self.data[self.offset : self.offset + size], 0, []
        for _ in range(math.prod(shape)):
            if at + 4 > size:
                raise BadBinary(f"{field}: {size} bytes hold fewer strings than the shape needs")
            length = int.from_bytes(chunk[at : at + 4], "little")
            if at + 4 + length > size:
                raise BadBinary(f"{field}: a string's length runs past the input's bytes")
            try:
                out.append(bytes(chunk[at + 4 : at + 4 + length]).decode("utf-8"))
            except UnicodeDecodeError:
                raise BadBinary(f"inputs[{i}]: a BYTES element is not UTF-8 text") from None
            at += 4 + length
        if at != size:
            raise BadBinary(f"{field}: {size} bytes, the strings of the shape take {at}")
        self.offset += size
        return np.asarray(out, dtype=object).reshape(shape)

    def check_used(self) -> None:
        if self.offset != len(self.data):
            raise BadBinary("body: binary data after the last input's")


def wants_binary(parameters: dict | None, outputs: list | None, name: str) -> bool:
    """An output's own `binary_data` if it says, else the request's `binary_data_output`."""
    default = bool((parameters or {}).get("binary_data_output", False))
    for out in outputs or []:
        if out.name == name:
            return bool((out.parameters or {}).get("binary_data", default))
    return default


def encode(answer: dict, raws: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """The answer's body and extra headers: plain JSON, or JSON header + raw outputs."""
    header = orjson.dumps(answer)
    if not raws:
        return header, {"content-type": "application/json"}
    return header + b"".join(raws), {
        "content-type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
