"""Evaluating gen_offsets' C expressions against DWARF debug info (no tests here).

`offsetof(T, a.b)`, `sizeof(T)`, `STATE_BIT(f)` (a bit field of PyASCIIObject.state),
enumerator names and sums of these are computed from the types the compiler described in
the interpreter's own debug info, with pyelftools: an independent second source for
recorder/python/offsets.py, and one that describes the binary that runs rather than headers.
Only the top-level DIEs of the few compilation units that define these types are read.
"""

from __future__ import annotations

import re
from pathlib import Path

from elftools.elf.elffile import ELFFile

UNITS = ("Python/pystate.c", "Python/ceval.c", "Objects/codeobject.c",
         "Objects/unicodeobject.c", "Objects/frameobject.c")
_QUALIFIERS = {"DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type"}


class DwarfTypes:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "rb")  # noqa: SIM115 (DIEs read lazily need the file open)
        elf = ELFFile(self._f)
        if not elf.has_dwarf_info():
            raise ValueError(f"{path} has no DWARF")
        self.types: dict[str, object] = {}  # "struct _ts", "PyThreadState" -> DIE
        self.enumerators: dict[str, int] = {}
        for cu in elf.get_dwarf_info().iter_CUs():
            top = cu.get_top_DIE()
            name = top.attributes.get("DW_AT_name")
            if name is None or not name.value.decode().endswith(UNITS):
                continue
            for die in top.iter_children():
                self._index(die)

    def close(self) -> None:
        self._f.close()

    def _index(self, die) -> None:
        name = die.attributes.get("DW_AT_name")
        if die.tag == "DW_TAG_enumeration_type":
            for e in die.iter_children():
                if e.tag == "DW_TAG_enumerator":
                    self.enumerators[e.attributes["DW_AT_name"].value.decode()] = \
                        e.attributes["DW_AT_const_value"].value
        if name is None or "DW_AT_declaration" in die.attributes:
            return
        text = name.value.decode()
        if die.tag == "DW_TAG_structure_type":
            self.types.setdefault(f"struct {text}", die)
        elif die.tag == "DW_TAG_typedef":
            self.types.setdefault(text, die)

    def _struct(self, die):
        while die.tag in _QUALIFIERS:
            die = die.get_DIE_from_attribute("DW_AT_type")
        if "DW_AT_declaration" in die.attributes:  # opaque in this unit: its definition
            return self.types[f"struct {die.attributes['DW_AT_name'].value.decode()}"]
        return die

    def _member(self, struct_die, name: str):
        for m in struct_die.iter_children():
            if m.tag == "DW_TAG_member" and m.attributes.get("DW_AT_name") is not None \
                    and m.attributes["DW_AT_name"].value.decode() == name:
                return m
        raise KeyError(f"no member {name}")

    def offsetof(self, type_name: str, path: str) -> int:
        die = self._struct(self.types[type_name])
        total = 0
        for part in path.split("."):
            m = self._member(die, part)
            total += m.attributes["DW_AT_data_member_location"].value
            die = self._struct(m.get_DIE_from_attribute("DW_AT_type"))
        return total

    def sizeof(self, type_name: str) -> int:
        return self._struct(self.types[type_name]).attributes["DW_AT_byte_size"].value

    def state_bit(self, field: str) -> int:
        state = self._member(self._struct(self.types["PyASCIIObject"]), "state")
        m = self._member(self._struct(state.get_DIE_from_attribute("DW_AT_type")), field)
        if "DW_AT_data_bit_offset" in m.attributes:  # DWARF 5
            return m.attributes["DW_AT_data_bit_offset"].value
        # DWARF 2-4 count DW_AT_bit_offset from the storage unit's most significant bit
        size = m.attributes["DW_AT_byte_size"].value * 8
        return (size - m.attributes["DW_AT_bit_offset"].value
                - m.attributes["DW_AT_bit_size"].value
                + 8 * m.attributes.get("DW_AT_data_member_location").value)

    def evaluate(self, expr: str) -> int:
        total = 0
        for term in (t.strip() for t in expr.split(" + ")):
            if m := re.fullmatch(r"offsetof\((.+?), ([\w.]+)\)", term):
                total += self.offsetof(m.group(1), m.group(2))
            elif m := re.fullmatch(r"sizeof\((.+)\)", term):
                total += self.sizeof(m.group(1))
            elif m := re.fullmatch(r"STATE_BIT\((\w+)\)", term):
                total += self.state_bit(m.group(1))
            elif term in self.enumerators:
                total += self.enumerators[term]
            else:
                raise ValueError(f"cannot evaluate {term!r}")
        return total
