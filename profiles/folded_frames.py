r"""The frames line of a folded block: what folded text leaves out, so that the stream
`ebpf-symbolize - | ebpf-upload --format pprof -` keeps addresses, mappings and build IDs.

Folded text has one name per frame and merges stacks whose names are equal. A pprof made
from it has names only: a server or `go tool pprof -symbolize=local` cannot symbolize it
again, nor tell two builds apart. So after the stack lines of a block, the symbolizer writes

    # ebpf-profiler-frames {"strings": [...], "mappings": [...], "frames": [...], "stacks": [...]}

- strings: the names, files, reasons, objects and build IDs the frames refer to by index;
- mappings: the recorded mappings ({"start", "limit", "offset", "path", "build_id"});
- frames: the block's distinct frames, each an object with only its non-default fields of
  profiles.model.Frame (n name, k kind, a address, o object, b build ID, e ELF address,
  f file, l line, i inlined, r reason, s start line, m mapping index; n, o, b, f and r are
  indices into strings), object and build ID left out where they are the mapping's;
- stacks: one entry per stack line, in order: the stacks whose names make that line, each
  [count, [frame index, ... root first]], their counts summing to the line's.

Readers of folded text skip `#` lines (flamegraph.pl counts them in "Ignored N lines");
ebpf-upload puts the frames back (profiles/folded.py checks that they are the frames the
names show). The text stays what counts: when the stack lines no longer match the frames line
(the text was edited or filtered between the two commands), the block keeps the names of its
text, and the reader says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from profiles.model import Frame, FrameKind, MappingInfo, Stack

FRAMES = "# ebpf-profiler-frames "
_MAX_U64 = 2**64 - 1


class FramesError(ValueError):
    """The frames line is not what the symbolizer writes (corrupt, or from elsewhere)."""


class _Strings:
    """The frames line's string table: names, files and reasons repeat over frames."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        i = self.index.get(text)
        if i is None:
            i = self.index[text] = len(self.index)
        return i


def _frame_text(f: Frame, mapping: int | None, s: _Strings) -> str:
    """A frame's JSON object, written as text: every field is a number (strings go by index
    into the string table), so no escaping is needed and json.dumps of one dict per frame
    (~20,000 a block for 30 s of a busy host, and half of this line's cost) is avoided. The
    fields come in the order read_frames documents; only non-default ones."""
    t = f'{{"n":{s(f.name)}'
    if f.kind is not FrameKind.USER:
        t += f',"k":"{f.kind.value}"'
    if f.address:
        t += f',"a":{f.address}'
    if f.elf_addr:
        t += f',"e":{f.elf_addr}'
    if f.line:
        t += f',"l":{f.line}'
    if f.start_line:
        t += f',"s":{f.start_line}'
    if f.file:
        t += f',"f":{s(f.file)}'
    if f.reason:
        t += f',"r":{s(f.reason)}'
    # object and build ID are most often the mapping's: said only where they differ
    m = f.mapping
    if f.object != (m.path if m else None):
        t += ',"o":null' if f.object is None else f',"o":{s(f.object)}'
    if f.build_id != (m.build_id if m else None):
        t += ',"b":null' if f.build_id is None else f',"b":{s(f.build_id)}'
    if f.inlined:
        t += ',"i":true'
    if mapping is not None:
        t += f',"m":{mapping}'
    return t + "}"


def _mapping_text(m: MappingInfo) -> str:
    path, build_id = json.dumps(m.path), json.dumps(m.build_id)  # the two strings: escaped
    return (f'{{"start":{m.start},"limit":{m.limit},"offset":{m.file_offset},'
            f'"path":{path},"build_id":{build_id}}}')


def frames_line(groups: Sequence[Sequence[tuple[Stack, int]]]) -> str:
    """The frames line of a block whose stack lines are made of `groups`, in line order.
    Written as text piece by piece (the same bytes as json.dumps with compact separators
    gives, which the tests check): only the string table needs json's escaping."""
    frames: dict[Frame, int] = {}
    mappings: dict[MappingInfo, int] = {}
    frame_texts: list[str] = []
    mapping_texts: list[str] = []
    line_texts: list[str] = []
    strings = _Strings()

    def number(f: Frame) -> int:
        """The index of a frame not yet listed, listing it (and its mapping, if new)."""
        m = None
        mi = f.mapping
        if mi is not None:
            m = mappings.get(mi)
            if m is None:
                m = mappings[mi] = len(mapping_texts)
                mapping_texts.append(_mapping_text(mi))
        i = frames[f] = len(frame_texts)
        frame_texts.append(_frame_text(f, m, strings))
        return i

    for group in groups:
        line: list[str] = []
        for stack, count in group:
            # most frames were met in an earlier stack: one pass at comprehension speed, then
            # the new ones numbered in stack order (one may repeat within the stack)
            ids = [frames.get(f) for f in stack]
            if None in ids:
                for pos, i in enumerate(ids):
                    if i is None:
                        got = frames.get(stack[pos])
                        ids[pos] = number(stack[pos]) if got is None else got
            line.append(f"[{count},[{','.join(map(str, ids))}]]")
        line_texts.append(f"[{','.join(line)}]")
    table = json.dumps(list(strings.index), separators=(",", ":"))
    return (f'{FRAMES}{{"strings":{table},"mappings":[{",".join(mapping_texts)}],'
            f'"frames":[{",".join(frame_texts)}],"stacks":[{",".join(line_texts)}]}}\n')


# ---- reading ----------------------------------------------------------------------------

def _int(v: Any, what: str) -> int:
    # bool is an int in Python; JSON true is not an address
    if type(v) is not int or not 0 <= v <= _MAX_U64:
        raise FramesError(f"{what} is not a whole number in 0..2^64-1")
    return v


def _opt_str(v: Any, what: str) -> str | None:
    if v is None or isinstance(v, str):
        return v
    raise FramesError(f"{what} is not a string")


def _mapping(d: Any) -> MappingInfo:
    if not isinstance(d, dict):
        raise FramesError("a mapping is not an object")
    path = _opt_str(d.get("path"), "mapping path") or ""
    return MappingInfo(_int(d.get("start"), "mapping start"),
                       _int(d.get("limit"), "mapping limit"),
                       _int(d.get("offset", 0), "mapping offset"), path,
                       _opt_str(d.get("build_id"), "mapping build_id"))


def _text(v: Any, strings: list[str], what: str) -> str | None:
    if v is None:
        return None
    if type(v) is not int or not 0 <= v < len(strings):
        raise FramesError(f"{what} is not an index into strings")
    return strings[v]


def _frame(d: Any, mappings: list[MappingInfo], strings: list[str]) -> Frame:
    if not isinstance(d, dict) or "n" not in d:
        raise FramesError("a frame is not an object with a name")
    try:
        kind = FrameKind(d.get("k", "user"))
    except ValueError:
        raise FramesError(f"frame kind {str(d.get('k'))[:20]!r} is unknown") from None
    mapping = None
    if "m" in d:
        m = _int(d["m"], "frame mapping")
        if m >= len(mappings):
            raise FramesError("a frame names a mapping that is not listed")
        mapping = mappings[m]
    line, start_line, elf_addr = d.get("l"), d.get("s"), d.get("e")
    obj = _text(d["o"], strings, "object") if "o" in d else (mapping.path if mapping else None)
    build_id = (_text(d["b"], strings, "build_id") if "b" in d
                else (mapping.build_id if mapping else None))
    return Frame(
        _text(d["n"], strings, "name") or "", kind, _int(d.get("a", 0), "frame address"),
        obj, build_id, None if elf_addr is None else _int(elf_addr, "ELF address"),
        _text(d.get("f"), strings, "file"), None if line is None else _int(line, "line"),
        d.get("i") is True, _text(d.get("r"), strings, "reason"),
        None if start_line is None else _int(start_line, "start line"), mapping)


def read_frames(text: str) -> list[list[tuple[Stack, int]]]:
    """The groups of a frames line (its JSON after FRAMES): per stack line, the stacks that
    make it and their counts. Raises FramesError when it is not what frames_line writes."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise FramesError(f"not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise FramesError("not a JSON object")
    strings, raw_m = body.get("strings", []), body.get("mappings", [])
    raw_f, raw_s = body.get("frames"), body.get("stacks")
    if not (isinstance(strings, list) and isinstance(raw_m, list) and isinstance(raw_f, list)
            and isinstance(raw_s, list)):
        raise FramesError("strings, mappings, frames and stacks must be lists")
    if not all(isinstance(x, str) for x in strings):
        raise FramesError("strings must be strings")
    mappings = [_mapping(m) for m in raw_m]
    frames = [_frame(f, mappings, strings) for f in raw_f]
    groups: list[list[tuple[Stack, int]]] = []
    for group in raw_s:
        if not isinstance(group, list):
            raise FramesError("a stack line's entry is not a list")
        out: list[tuple[Stack, int]] = []
        for entry in group:
            if not (isinstance(entry, list) and len(entry) == 2
                    and isinstance(entry[1], list)):
                raise FramesError("a stack is not [count, [frame, ...]]")
            ids = [_int(i, "frame index") for i in entry[1]]
            if any(i >= len(frames) for i in ids):
                raise FramesError("a stack names a frame that is not listed")
            out.append((tuple(frames[i] for i in ids), _int(entry[0], "stack count")))
        groups.append(out)
    return groups
