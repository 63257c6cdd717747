"""Feast's online row bytes, built a whole Arrow batch at a time with numpy.

Feast's own path turns every float of every row into a Python float inside a
protobuf object, then serializes it (feast#2594, #6160): for a 256-float
embedding that is 256 Python objects per row. The bytes it ends up writing are
fixed by two public formats, so they can be assembled directly:

* a `ValueProto` holding a `float_list_val` is protobuf wire format: the tag of
  field 16 (0x82 0x01), a varint length, then the nested `FloatList` whose only
  field is `repeated float val = 1` packed: tag 0x0A, a varint byte length and
  the raw little-endian float32 values, i.e. the Arrow buffer as it is;
* an entity key serialized with `entity_key_serialization_version: 3` is
  `<u32 number of keys> (<u32 STRING> <u32 len> key name)* (<u32 type> <u32 len> value)*`
  (feast.infra.key_encoding_utils.serialize_entity_key).

`tests/test_feast_plugin.py` checks both against Feast's own functions.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.protos.feast.types.Value_pb2 import ValueType

# Tag of ValueProto.float_list_val (field 16, length-delimited) and of FloatList.val (field 1, packed).
FLOAT_LIST_TAG = bytes([(ValueProto.DESCRIPTOR.fields_by_name["float_list_val"].number << 3 | 2) & 0x7F | 0x80,
                        (ValueProto.DESCRIPTOR.fields_by_name["float_list_val"].number << 3 | 2) >> 7])
PACKED_VAL_TAG = 0x0A
MAX_VARINT = 10


class EncodingError(ValueError):
    pass


def varint_lengths(values: np.ndarray) -> np.ndarray:
    """Bytes each non-negative integer takes as a protobuf varint."""
    values = values.astype(np.uint64)
    n = np.ones(len(values), dtype=np.int64)
    for shift in range(7, 64, 7):
        n += values >= (np.uint64(1) << np.uint64(shift))
    return n


def put_varints(matrix: np.ndarray, rows: np.ndarray, column: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Write varint `values[i]` into `matrix[rows[i]]` from `column[i]` on; returns the column after each."""
    values = values.astype(np.uint64)
    lengths = varint_lengths(values)
    for j in range(int(lengths.max(initial=1))):
        live = lengths > j
        byte = (values >> np.uint64(7 * j)) & np.uint64(0x7F)
        more = (lengths > j + 1).astype(np.uint64) << np.uint64(7)
        matrix[rows[live], column[live] + j] = (byte | more)[live].astype(np.uint8)
    return column + lengths


def assemble(head: np.ndarray, head_len: np.ndarray, body: np.ndarray, body_len: np.ndarray,
             tail: bytes = b"") -> tuple[np.ndarray, np.ndarray]:
    """Rows of `head[i, :head_len[i]] + body slice i + tail` in one buffer; returns (buffer, row offsets).

    `body` holds the rows' bodies back to back. Every byte is placed by a
    vectorised copy (one strided copy when all rows have the same layout, as
    a fixed-size embedding has); no per-row Python work.
    """
    n = len(head_len)
    row_len = head_len + body_len + len(tail)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_len, out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    tail_bytes = np.frombuffer(tail, dtype=np.uint8)
    if n and (head_len == head_len[0]).all() and (body_len == body_len[0]).all():
        h, b = int(head_len[0]), int(body_len[0])
        grid = out.reshape(n, h + b + len(tail))
        grid[:, :h] = head[:, :h]
        grid[:, h:h + b] = body.reshape(n, b)
        grid[:, h + b:] = tail_bytes
        return out, offsets
    is_body = np.ones(len(out), dtype=bool)
    head_cols = np.arange(head.shape[1])
    head_mask = head_cols[None, :] < head_len[:, None]
    head_pos = (offsets[:-1, None] + head_cols[None, :])[head_mask]
    is_body[head_pos] = False
    out[head_pos] = head[head_mask]
    if tail:
        tail_pos = ((offsets[:-1] + head_len + body_len)[:, None] + np.arange(len(tail))[None, :]).ravel()
        is_body[tail_pos] = False
        out[tail_pos] = np.tile(tail_bytes, n)
    out[is_body] = body
    return out, offsets


def split(buffer: np.ndarray, offsets: np.ndarray) -> list[bytes]:
    """The rows of an `assemble` result as bytes objects, what the stores' clients take.

    bytes, not memoryview slices: a memoryview is tracked by the cyclic garbage
    collector, and 100k of them per batch set off full collections over
    everything Feast has loaded (measured 20x slower than the copy).
    """
    data = buffer.tobytes()
    bounds = offsets.tolist()
    return [data[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


@dataclass(frozen=True)
class Packed:
    """Byte rows back to back: row i is `buffer[offsets[i]:offsets[i + 1]]`.

    The form a batch is encoded in. SQLite's client takes a bytes object per
    row (`tolist`); the Redis writer frames whole ranges of rows into one
    request without ever making per-row objects (resp.py). Iterating yields
    the rows as bytes.
    """

    buffer: np.ndarray
    offsets: np.ndarray

    @classmethod
    def of(cls, rows) -> "Packed":
        """A Packed from a Packed (as it is) or from a sequence of bytes."""
        if isinstance(rows, Packed):
            return rows
        rows = list(rows)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)), out=offsets[1:])
        return cls(np.frombuffer(b"".join(rows), dtype=np.uint8), offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def tolist(self) -> list[bytes]:
        return split(self.buffer, self.offsets)

    def __iter__(self):
        return iter(self.tolist())


def decimal_digits(values: np.ndarray) -> np.ndarray:
    """How many decimal digits each non-negative integer has."""
    values = np.asarray(values, dtype=np.int64)
    n = np.ones(len(values), dtype=np.int64)
    for power in range(1, 19):
        n += values >= 10 ** power
    return n


def resp_bulk(rows: Packed) -> Packed:
    """Every row as a RESP bulk string, `$<length>\r\n<row>\r\n`: how Redis receives a command's arguments.

    Framing here, with numpy over the whole batch, replaces redis-py's
    per-argument Python packing (about 1.5 us an argument, 3 arguments a row).
    """
    lengths = rows.lengths
    digits = decimal_digits(lengths)
    n, width = len(lengths), int(digits.max(initial=1))
    head = np.zeros((n, 1 + width + 2), dtype=np.uint8)
    head[:, 0] = ord("$")
    for j in range(width):  # digit j (from the left) of each length that has one
        live = digits > j
        place = 10 ** (digits[live] - 1 - j)
        head[np.flatnonzero(live), 1 + j] = ord("0") + (lengths[live] // place) % 10
    rows_idx = np.arange(n)
    head[rows_idx, 1 + digits] = ord("\r")
    head[rows_idx, 2 + digits] = ord("\n")
    body = rows.buffer[int(rows.offsets[0]):int(rows.offsets[-1])]
    buffer, offsets = assemble(head, 3 + digits, body, lengths, b"\r\n")
    return Packed(buffer, offsets)


def concat_rows(parts: list[Packed]) -> Packed:
    """Row i of the result is row i of every part, one after the other (all parts have the same row count)."""
    n = len(parts[0])
    if any(len(p) != n for p in parts):
        raise ValueError("concat_rows: parts with different row counts")
    lengths = np.stack([p.lengths for p in parts], axis=1)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths.sum(axis=1), out=offsets[1:])
    out = np.empty(int(offsets[-1]), dtype=np.uint8)
    starts = offsets[:-1, None] + np.cumsum(lengths, axis=1) - lengths  # where each part's piece of a row begins
    uniform = bool(n) and bool((lengths == lengths[0]).all())
    for j, part in enumerate(parts):
        body = part.buffer[int(part.offsets[0]):int(part.offsets[-1])]
        if uniform:  # every row has the same layout (a fixed-size embedding): strided copies, no index arrays
            row = int(offsets[1])
            out.reshape(n, row)[:, int(starts[0, j]):int(starts[0, j] + lengths[0, j])] = \
                body.reshape(n, int(lengths[0, j]))
        elif len(body):
            # Destination of every byte: its row's start in the output plus its place within the row.
            shift = np.repeat(starts[:, j] - (part.offsets[:-1] - part.offsets[0]), lengths[:, j])
            out[shift + np.arange(len(body))] = body
    return Packed(out, offsets)


def float_list_values(column: pa.Array, where: str = "") -> Packed:
    """`ValueProto(float_list_val=...).SerializeToString()` of every row of a list<float> column.

    A null row becomes b"" (an empty ValueProto), as Feast writes it.
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_list(column.type) or pa.types.is_large_list(column.type)
            or pa.types.is_fixed_size_list(column.type)):
        raise EncodingError(f"{where}: expected a list of floats, got {column.type}")
    n = len(column)
    valid = column.is_valid().to_numpy(zero_copy_only=False)
    present = column.filter(pa.array(valid)) if not valid.all() else column
    floats = present.flatten()
    if floats.null_count:
        row = int(np.flatnonzero(valid)[int(np.flatnonzero(
            pc.list_value_length(present).to_numpy(zero_copy_only=False) > 0)[0])])
        raise EncodingError(f"{where}: a null inside an embedding (first affected row {row}); "
                            "Feast cannot serve a list with missing floats")
    if floats.type != pa.float32():
        # Feast stores float_list_val as float32; the C cast rounds as protobuf's setter does.
        floats = floats.cast(pa.float32())
    counts = np.zeros(n, dtype=np.int64)
    counts[valid] = pc.list_value_length(present).to_numpy(zero_copy_only=False)
    payload = 4 * counts
    # An empty list is a present FloatList with no packed field: b"\x82\x01\x00".
    inner = np.where(counts > 0, 1 + varint_lengths(payload) + payload, 0)
    head = np.zeros((n, 2 + 2 * MAX_VARINT + 1), dtype=np.uint8)
    head[:, 0], head[:, 1] = FLOAT_LIST_TAG[0], FLOAT_LIST_TAG[1]
    col = put_varints(head, np.arange(n), np.full(n, 2), inner)
    nonempty = np.flatnonzero(counts > 0)
    head[nonempty, col[nonempty]] = PACKED_VAL_TAG
    col[nonempty] = put_varints(head, nonempty, col[nonempty] + 1, payload[nonempty])
    head_len = np.where(valid, col, 0)
    body = np.frombuffer(floats.buffers()[1], dtype=np.uint8,
                         count=4 * len(floats), offset=4 * floats.offset)
    buffer, offsets = assemble(head, head_len, body, np.where(valid, payload, 0))
    return Packed(buffer, offsets)


def entity_keys(join_key: str, column: pa.Array, value_type: ValueType, suffix: bytes = b"",
                where: str = "") -> Packed:
    """`serialize_entity_key(EntityKey([join_key], [value]), 3) + suffix` for every value of a one-key entity."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise EncodingError(f"{where}: column {join_key!r} is null at row {row}; every row needs an entity key")
    value_type = int(getattr(value_type, "value", value_type))  # feast.value_type.ValueType or the proto enum
    name = join_key.encode()
    prefix = struct.pack("<III", 1, ValueType.STRING, len(name)) + name
    n = len(column)
    if value_type == ValueType.STRING:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            raise EncodingError(f"{where}: join key {join_key!r} is a STRING entity but the column is {column.type}")
        lengths = pc.binary_length(column).to_numpy(zero_copy_only=False).astype(np.int64)
        value_offsets = np.frombuffer(column.buffers()[1], dtype=np.int64 if pa.types.is_large_string(column.type)
                                      else np.int32, count=n + 1, offset=0)
        start = int(value_offsets[column.offset]) if n else 0
        body = np.frombuffer(column.buffers()[2], dtype=np.uint8, count=int(lengths.sum()), offset=start) \
            if n and lengths.sum() else np.empty(0, dtype=np.uint8)
        type_code = ValueType.STRING
    elif value_type in (ValueType.INT64, ValueType.INT32):
        if not pa.types.is_integer(column.type):
            raise EncodingError(f"{where}: join key {join_key!r} is an integer entity but the column is {column.type}")
        dtype = "<i8" if value_type == ValueType.INT64 else "<i4"
        values = column.to_numpy(zero_copy_only=False).astype(dtype)
        lengths = np.full(n, values.itemsize, dtype=np.int64)
        body = values.view(np.uint8)
        type_code = value_type
    else:
        raise EncodingError(f"{where}: join key type {value_type} is not handled by the embedding engine")
    head = np.empty((n, len(prefix) + 8), dtype=np.uint8)
    head[:, : len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
    head[:, len(prefix): len(prefix) + 4] = np.frombuffer(struct.pack("<I", type_code), dtype=np.uint8)
    head[:, len(prefix) + 4:] = lengths.astype("<u4").view(np.uint8).reshape(n, 4)
    buffer, offsets = assemble(head, np.full(n, head.shape[1]), body, lengths, suffix)
    return Packed(buffer, offsets)
