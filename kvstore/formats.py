"""kvstore pairs as files (CSV, TSV, JSON lines, JSON), read and written without click.

The codec keeps every type. As text (CSV/TSV cells, arguments): str as is, int and float as
Python writes them, bytes as hex (``00ff``); a float beyond its range (``1e400``) is refused,
not stored as inf. JSON carries str, int and float natively, bytes as ``{"$bytes": "<hex>"}``,
infinities as ``{"$float": "inf"}``. CSV/TSV headers name the columns key and value (any case,
spaces around names ignored), optionally key_type and value_type (each row's types); cells
keep their characters exactly. :func:`dump` writes the type columns, so :func:`load` reads back
exactly what it wrote. A 0-byte CSV/TSV is refused (an empty store's dump has a header); an empty
JSON lines file loads 0 pairs. A JSON file is one array of ``{"key": ..., "value": ...}`` or one
object ``{"key": value, ...}``. Problems raise :class:`FormatError`, saying where and what to do.
"""

from __future__ import annotations

import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any, cast

from kvstore.validate import Key, Value, check_key, check_value

if TYPE_CHECKING:
    from kvstore.api import StoreAPI

KEY_TYPES = ("str", "int", "bytes")
VALUE_TYPES = ("str", "int", "float", "bytes")
PROGRESS_EVERY = 1000  # pairs read between two calls of a load's progress(pairs, bytes read or None)
BATCH = 1000  # pairs encoded per write() when dumping

Progress = Callable[[int, "int | None"], None]
Source = str | os.PathLike[str] | IO[bytes] | IO[str]
_INF = float("inf")
_INFINITIES = {"inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}
TOO_DEEP = 'JSON nested too deeply to read; a record\'s value is a string, a number or {"$bytes": "<hex>"}'


class Format(StrEnum):
    """A file format for pairs; :meth:`for_name` tells it from a file name's extension."""

    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"
    JSON = "json"

    @classmethod
    def for_name(cls, name: str) -> Format | None:
        """The format a file name's extension says (.csv .tsv .tab .jsonl .ndjson .nl .json), or None."""
        return EXTENSIONS.get(os.path.splitext(name)[1].lower())


EXTENSIONS = {".csv": Format.CSV, ".tsv": Format.TSV, ".tab": Format.TSV, ".jsonl": Format.JSONL,
              ".ndjson": Format.JSONL, ".nl": Format.JSONL, ".json": Format.JSON}


class FormatError(ValueError):
    """A source that cannot be read as pairs: ``source``, ``where`` (e.g. "line 3") and ``problem``."""

    def __init__(self, source: str, where: str | None, problem: str) -> None:
        self.source, self.where, self.problem = source, where, problem
        super().__init__(f"{source}, {where}: {problem}" if where else f"{source}: {problem}")


class TypeConflictError(FormatError):
    """``key_type=``/``value_type=`` was given for a CSV/TSV whose header has that type column."""


# -- the codec ---------------------------------------------------------------------------


def parse_text(text: str, kind: str) -> Key | Value:
    """A key or value written as text: str as is, int/float as Python writes them, bytes as hex."""
    if kind in ("str", "int", "bytes"):
        return text if kind == "str" else int(text) if kind == "int" else bytes.fromhex(text)
    if kind == "float":
        number = float(text)
        if abs(number) == _INF and text.strip().lower() not in _INFINITIES:
            raise ValueError(f"{text.strip()[:40]} is beyond the float range (about ±1.8e308) and would be stored as "
                             f"{number!r}; write {number!r} if infinity is meant")
        return number
    raise ValueError(f"unknown type {kind!r}; use one of: {', '.join(VALUE_TYPES)}")


def to_text(obj: object) -> tuple[str, str]:
    """The text form of a stored key or value and its type name, as :func:`parse_text` reads it."""
    kind = type(obj)
    if kind is bytes:
        return obj.hex(), "bytes"  # type: ignore[attr-defined]
    if obj is None:  # a NULL another program wrote
        return "", "null"
    return str(obj), kind.__name__  # str(float) is repr(float)


def to_json(obj: object) -> Any:
    """The JSON-ready form: bytes and infinities become tagged objects, the rest is native."""
    kind = type(obj)
    if kind is bytes:
        return {"$bytes": obj.hex()}  # type: ignore[attr-defined]
    if kind is float and abs(obj) == _INF:  # type: ignore[arg-type]
        return {"$float": repr(obj)}
    return obj


def from_json(obj: Any) -> Any:
    """Undo :func:`to_json`; other objects pass through (validation refuses lists, bools, null)."""
    if type(obj) is float and abs(obj) == _INF:  # json reads 1e400 as inf
        raise ValueError('a JSON number is beyond the float range (about ±1.8e308) and would be stored as inf; '
                         'write {"$float": "inf"} if infinity is meant')
    if isinstance(obj, dict):
        if len(obj) == 1 and isinstance(obj.get("$bytes"), str):
            return bytes.fromhex(obj["$bytes"])
        if len(obj) == 1 and isinstance(obj.get("$float"), str):
            return parse_text(obj["$float"], "float")
        raise ValueError(f'the JSON object {_short(obj)} is not a storable key or value; bytes are written '
                         '{"$bytes": "<hex>"} and infinities {"$float": "inf"}')
    return obj


def _short(obj: Any) -> str:
    import json

    text = json.dumps(obj, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


# -- reading -----------------------------------------------------------------------------


def read_pairs(source: Source, format: Format | str | None = None, *, key_type: str | None = None, value_type:
               str | None = None, progress: Progress | None = None, name: str | None = None) -> Iterator[tuple[Key, Value]]:
    """Stream validated (key, value) pairs out of a path or a binary or text file object.

    ``format`` defaults to what the file name's extension says. ``name`` is what messages
    call the source (default: its path or file name). A text stream should be opened with
    ``newline=""`` so that line breaks inside CSV fields stay exact.
    """
    return iter(_Reader(source, format, key_type, value_type, progress, name))


def load(db: StoreAPI, source: Source, format: Format | str | None = None, *, key_type: str | None = None,
         value_type: str | None = None, progress: Progress | None = None, name: str | None = None) -> int:
    """Load every pair of ``source`` into ``db`` in one transaction (``db.update``); the pairs read.

    All or nothing: the first bad row raises :class:`FormatError` and nothing is kept.
    ``progress(pairs, bytes)`` is called every PROGRESS_EVERY pairs and once at the end.
    """
    reader = _Reader(source, format, key_type, value_type, progress, name)
    try:
        db.update(reader)
    except FormatError as exc:
        raise type(exc)(exc.source, exc.where, f"{exc.problem}; nothing was loaded") from None
    return reader.pairs


class _Reader:
    """One pass over a source: its pairs, counted, with progress reports."""

    def __init__(self, source: Source, format: Format | str | None, key_type: str | None,
                 value_type: str | None, progress: Progress | None, name: str | None) -> None:
        self.source = source
        path = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
        own = getattr(source, "name", None)
        self.label = name or path or (own if isinstance(own, str) and not own.startswith("<") else "<stream>")
        found = Format.for_name(path or (own if isinstance(own, str) else "")) if format is None else Format(format)
        if found is None:
            raise FormatError(self.label, None, f"cannot tell the format from the file name; pass format= ({', '.join(Format)})")
        self.format = found
        if found in (Format.JSONL, Format.JSON) and (key_type or value_type):
            raise ValueError("key_type= and value_type= apply to CSV and TSV only: JSON carries each key's and value's type")
        for given, kinds, role in ((key_type, KEY_TYPES, "key"), (value_type, VALUE_TYPES, "value")):
            if given is not None and given not in kinds:
                raise ValueError(f"{role}_type={given!r} is not one of {', '.join(kinds)}")
        self.key_type, self.value_type, self.progress = key_type, value_type, progress
        self.pairs, self.bytes = 0, cast("int | None", 0)

    def __iter__(self) -> Iterator[tuple[Key, Value]]:
        if isinstance(self.source, (str, os.PathLike)):
            with open(self.source, "rb") as stream:
                yield from self._counted(stream)
        else:
            yield from self._counted(self.source)

    def _counted(self, stream: IO[Any]) -> Iterator[tuple[Key, Value]]:
        if isinstance(stream, io.TextIOBase) or isinstance(stream.read(0), str):
            self.bytes = None
        fmt, progress = self.format, self.progress
        pairs = (self._json(stream.read()) if fmt is Format.JSON else self._jsonl(self._lines(stream))
                 if fmt is Format.JSONL else self._csv(self._lines(stream), "\t" if fmt is Format.TSV else ","))
        for pair in pairs:
            yield pair
            self.pairs += 1
            if progress is not None and not self.pairs % PROGRESS_EVERY:
                progress(self.pairs, self.bytes)
        if progress is not None:
            progress(self.pairs, self.bytes)

    def _lines(self, stream: IO[Any]) -> Iterator[str]:
        """Lines (decoded one by one, so a bad byte's line is known), endings kept, BOM skipped."""
        if self.bytes is None:  # a text stream
            for number, line in enumerate(stream, 1):
                yield line.removeprefix("\ufeff") if number == 1 else line
            return
        for number, raw in enumerate(stream, 1):
            self.bytes += len(raw)
            try:
                yield (raw[3:] if number == 1 and raw.startswith(b"\xef\xbb\xbf") else raw).decode("utf-8")
            except UnicodeDecodeError as exc:
                where, problem = f"line {number}", f"not UTF-8 text ({exc.reason} at byte {exc.start + 1})"
                raise FormatError(self.label, where, f"{problem}; save the file as UTF-8") from None

    def _pair(self, where: str, make: Callable[..., tuple[Any, Any]], *args: Any) -> tuple[Key, Value]:
        """Build (``make(*args)``) and validate one pair; a problem becomes a FormatError saying where."""
        try:
            key, value = make(*args)
            return check_key(key), check_value(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise FormatError(self.label, where, str(exc)) from None

    def _csv(self, lines: Iterator[str], delimiter: str) -> Iterator[tuple[Key, Value]]:
        import csv

        csv.field_size_limit(2**31 - 1)  # kvstore values may be far larger than csv's 128 KiB default
        reader = csv.reader(lines, delimiter=delimiter, strict=True)
        first = 1  # the line the next record starts on (a quoted field may span lines)
        try:
            header = next(reader, None)
            if header is None:
                raise FormatError(self.label, None, "the file is empty; a CSV or TSV file starts with a header line "
                                  "naming the columns key and value (a dump of an empty store has one)")
            columns = self._columns(header, delimiter)
            width = len(header)
            k, v = columns["key"], columns["value"]
            kt, vt = columns.get("key_type"), columns.get("value_type")
            key_type, value_type = self.key_type or "str", self.value_type or "str"

            def cells(row: list[str]) -> tuple[Any, Any]:
                return (_cell(row[k], row[kt] if kt is not None else key_type, KEY_TYPES, "key"),
                        _cell(row[v], row[vt] if vt is not None else value_type, VALUE_TYPES, "value"))

            for row in reader:
                where, first = f"line {first + 1}", reader.line_num
                if not row:
                    continue
                if len(row) != width:
                    raise FormatError(self.label, where, f"expected {width} fields like the header, got {len(row)}; put a "
                                      f"field that holds {'a tab' if delimiter == chr(9) else 'a comma'} in double quotes")
                yield self._pair(where, cells, row)
        except csv.Error as exc:
            raise FormatError(self.label, f"line {first + 1}", f'{exc}; check the quotes: a field that starts with " must '
                              'end with " (write "" for a quote inside it)') from None

    def _columns(self, header: list[str], delimiter: str) -> dict[str, int]:
        names = [name.strip().lower() for name in header]
        wanted = ("key", "value", "key_type", "value_type")
        for role in ("key", "value"):
            if getattr(self, f"{role}_type") and f"{role}_type" in names:
                raise TypeConflictError(self.label, "line 1", f"the header has a {role}_type column, which says each "
                                        f"row's {role} type, so {role}_type= cannot be given too; drop {role}_type=")
        if "key" in names and "value" in names and set(names) <= set(wanted) and len(set(names)) == len(names):
            return {name: i for i, name in enumerate(names)}
        problem = ("the header must name the columns key and value (optionally key_type and value_type, in any order), "
                   f"got {delimiter.join(header)!r}")
        other = "," if delimiter == "\t" else "\t"
        if len(header) == 1 and other in header[0]:
            seen, read, meant = ("comma", "TSV", "CSV") if other == "," else ("tab", "CSV", "TSV")
            problem += f": that line is {seen}-separated but the file is being read as {read}; load it as {meant}"
        raise FormatError(self.label, "line 1", problem)

    def _jsonl(self, lines: Iterator[str]) -> Iterator[tuple[Key, Value]]:
        from json import JSONDecodeError, loads

        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                record = loads(line)
            except (JSONDecodeError, RecursionError) as exc:
                problem = f"not valid JSON ({exc.msg} at column {exc.pos + 1})" if isinstance(exc, JSONDecodeError) else TOO_DEEP
                raise FormatError(self.label, f"line {number}", problem) from None
            yield self._pair(f"line {number}", _record, record)

    def _json(self, data: str | bytes) -> Iterator[tuple[Key, Value]]:
        """Pairs of one JSON array of records, or of one object {"key": value, ...}."""
        import json

        if isinstance(data, bytes):
            self.bytes = len(data)
        try:
            obj = json.loads(data.decode("utf-8-sig") if isinstance(data, bytes) else data.removeprefix("\ufeff"))
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1  # type: ignore[arg-type]
            raise FormatError(self.label, f"line {line}", f"not UTF-8 text ({exc.reason}); save the file as UTF-8") from None
        except (json.JSONDecodeError, RecursionError) as exc:
            if isinstance(exc, RecursionError):
                raise FormatError(self.label, None, TOO_DEEP) from None
            problem = "the file is empty" if not data.strip() else f"not valid JSON ({exc.msg} at column {exc.colno})"
            raise FormatError(self.label, f"line {exc.lineno}", problem) from None
        if isinstance(obj, list):
            for number, record in enumerate(obj, 1):
                yield self._pair(f"item {number} of the array", _record, record)
        elif isinstance(obj, dict):
            for key, value in obj.items():
                yield self._pair(f"key {key!r}", _keyed, key, value)
        else:
            raise FormatError(self.label, "line 1", 'a JSON file holds one array of {"key": ..., "value": ...} objects '
                              'or one object {"key": value, ...}; for one object per line, load it as JSON lines')


def _cell(text: str, kind: str, kinds: tuple[str, ...], role: str) -> Any:
    if kind not in kinds:
        raise ValueError(f"{role}_type {kind!r} is not one of {', '.join(kinds)}")
    try:
        return parse_text(text, kind)
    except ValueError as exc:
        raise ValueError(f"{role} {text[:40]!r} is not a valid {kind} ({exc}); fix the cell or the row's {role} type") from None


def _keyed(key: str, value: Any) -> tuple[Any, Any]:
    return key, from_json(value)


def _record(obj: Any) -> tuple[Any, Any]:
    """(key, value) out of a {"key": ..., "value": ...} object."""
    if not isinstance(obj, dict) or set(obj) != {"key", "value"}:
        raise ValueError(f'expected an object {{"key": ..., "value": ...}}, got {_short(obj)}')
    return from_json(obj["key"]), from_json(obj["value"])


# -- writing -----------------------------------------------------------------------------

_NAMES = {str: "str", int: "int", float: "float", bytes: "bytes", type(None): "null"}
_FORMATTED = {(k, v) for k in (int, str) for v in (int, str, float)}  # whose text is what an f-string writes


def _json_text(obj: object) -> str:
    """JSON for a key or value other than an int or str (those are inlined by the encoders)."""
    import json

    return json.dumps(to_json(obj), ensure_ascii=False, allow_nan=False)


def _json_objects(chunk: list[tuple[Any, Any]]) -> list[str]:
    from json.encoder import encode_basestring as js  # C-accelerated; what json.dumps uses

    return [f'{{"key": {str(k) if type(k) is int else js(k) if type(k) is str else _json_text(k)}, '
            f'"value": {js(v) if type(v) is str else str(v) if type(v) is int else _json_text(v)}}}'
            for k, v in chunk]


def _csv_body(chunk: list[tuple[Any, Any]], d: str) -> str:
    """Rows key,value,key_type,value_type; quoted only where a cell needs it, as csv does."""
    names = _NAMES
    kinds = {(type(k), type(v)) for k, v in chunk}
    if len(kinds) == 1 and kinds <= _FORMATTED:  # one key type, one value type: the common case
        (kind_k, kind_v), = kinds
        end = f"{d}{names[kind_k]}{d}{names[kind_v]}\n"
        body = "".join([f"{k}{d}{v}{end}" for k, v in chunk])  # str(float) is repr(float)
    else:
        body = "".join([f"{k if type(k) is str else str(k) if type(k) is int else to_text(k)[0]}{d}"
                        f"{v if type(v) is str else str(v) if type(v) is int else to_text(v)[0]}{d}"
                        f"{names[type(k)]}{d}{names[type(v)]}\n" for k, v in chunk])
    n = len(chunk)
    if body.count(d) == 3 * n and body.count("\n") == n and '"' not in body and "\r" not in body:
        return body  # no cell holds a delimiter, quote or line break: nothing to quote
    return "".join(_csv_line([to_text(k)[0], to_text(v)[0], names[type(k)], names[type(v)]], d) for k, v in chunk)


def _csv_line(cells: Iterable[str], d: str) -> str:
    return d.join(f'"{c.replace(chr(34), 2 * chr(34))}"' if d in c or '"' in c or "\n" in c or "\r" in c
                  else c for c in cells) + "\n"


def _write(out: IO[str], fmt: Format, items: Iterable[Any], encode: Callable[[list[Any]], Any], header: str) -> int:
    """Write items BATCH at a time: ``encode`` gives CSV/TSV text, or a list of JSON objects."""
    it, written = iter(items), 0
    if fmt in (Format.CSV, Format.TSV):
        out.write(header)
    while chunk := list(itertools.islice(it, BATCH)):
        if fmt is Format.JSONL:
            out.write("\n".join(encode(chunk)) + "\n")
        elif fmt is Format.JSON:  # one array, one object per line
            out.write(("[" if not written else ",\n ") + ",\n ".join(encode(chunk)))
        else:
            out.write(encode(chunk))
        written += len(chunk)
    if fmt is Format.JSON:
        out.write("]\n" if written else "[]\n")
    return written


def write_pairs(out: IO[str], pairs: Iterable[tuple[Any, Any]], format: Format | str = Format.JSONL) -> int:
    """Write pairs to a text stream in a form :func:`load` reads back exactly; the pairs written.

    CSV/TSV get the header key,value,key_type,value_type; JSON is one array of
    ``{"key": ..., "value": ...}`` objects, one per line.
    """
    fmt = Format(format)
    d = "\t" if fmt is Format.TSV else ","
    encode = _json_objects if fmt in (Format.JSONL, Format.JSON) else lambda chunk: _csv_body(chunk, d)
    return _write(out, fmt, pairs, encode, d.join(("key", "value", "key_type", "value_type")) + "\n")


def write_records(out: IO[str], records: Iterable[dict[str, Any]], columns: list[str],
                  format: Format | str, typed: tuple[str, ...] = ()) -> int:
    """Write listing records (counts, keys, stats); the records written.

    ``typed`` names the columns holding kvstore keys or values: JSON tags their bytes and
    infinities, CSV/TSV write them as text and add a ``<column>_type`` column for each at the
    end. Other cells: None is null in JSON and empty in CSV/TSV.
    """
    import json

    fmt = Format(format)
    d = "\t" if fmt is Format.TSV else ","

    def row(r: dict[str, Any]) -> str:
        texts = {c: to_text(r[c]) for c in typed}
        cells = [texts[c][0] if c in typed else "" if r[c] is None else str(r[c]) for c in columns]
        return _csv_line(cells + [texts[c][1] for c in columns if c in typed], d)

    def encode(chunk: list[dict[str, Any]]) -> Any:
        if fmt in (Format.CSV, Format.TSV):
            return "".join(map(row, chunk))
        return [json.dumps({c: to_json(r[c]) if c in typed else r[c] for c in columns}, ensure_ascii=False,
                           allow_nan=False) for r in chunk]

    return _write(out, fmt, records, encode, _csv_line([*columns, *(f"{c}_type" for c in columns if c in typed)], d))


def dump(db: StoreAPI, dest: str | os.PathLike[str] | IO[bytes] | IO[str], format: Format | str = Format.JSONL) -> int:
    """Write every pair of ``db``, in key order, to a path or a binary or text file object; the pairs written.

    A path is created or overwritten (UTF-8, ``\\n`` line ends); a text stream's encoding
    is the caller's (UTF-8 keeps every str).
    """
    if isinstance(dest, (str, os.PathLike)):
        with open(dest, "w", encoding="utf-8", newline="") as out:
            return write_pairs(out, db.items(), format)
    if isinstance(dest, io.TextIOBase) or isinstance(getattr(dest, "encoding", None), str):
        return write_pairs(dest, db.items(), format)  # type: ignore[arg-type]
    out = io.TextIOWrapper(cast(IO[bytes], dest), encoding="utf-8", newline="")
    try:
        return write_pairs(out, db.items(), format)
    finally:
        out.flush()
        out.detach()
