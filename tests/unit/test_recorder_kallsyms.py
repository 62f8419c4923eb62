"""recorder.kernel.KernelSymbols: kallsyms text symbols held compactly, rows as before."""

from __future__ import annotations

from recorder.kernel import KernelSymbols

KALLSYMS = """\
ffffffff81000000 T _stext
ffffffff81000100 t do_one_initcall
0000000000000000 T hidden_by_kptr_restrict
ffffffff81000200 D some_data
ffffffffc0001000 t ext4_read [ext4]
ffffffffc0000000 t nf_hook [nf_tables]
ffffffff81000050 W weak_fn
ffffffffc0002000 t ext4_write [ext4]
"""


def test_text_symbols_sorted_with_names_modules_and_sizes(tmp_path):
    p = tmp_path / "kallsyms"
    p.write_text(KALLSYMS)
    k = KernelSymbols.load(str(p))
    assert len(k) == 6  # data and hidden (address 0) symbols are left out
    rows = k.all_rows()
    assert [(r["addr"], r["name"], r["module"]) for r in rows] == [
        (0xffffffff81000000, "_stext", None), (0xffffffff81000050, "weak_fn", None),
        (0xffffffff81000100, "do_one_initcall", None), (0xffffffffc0000000, "nf_hook", "nf_tables"),
        (0xffffffffc0001000, "ext4_read", "ext4"), (0xffffffffc0002000, "ext4_write", "ext4")]
    assert rows[0]["size"] == 0x50 and rows[-1]["size"] == 0


def test_rows_for_each_symbol_once(tmp_path):
    p = tmp_path / "kallsyms"
    p.write_text(KALLSYMS)
    k = KernelSymbols.load(str(p))
    got = k.rows_for({0xffffffff81000108, 0xffffffff81000110, 0xffffffffc0001004, 0x10})
    assert sorted(r["name"] for r in got) == ["do_one_initcall", "ext4_read"]
    assert k.rows_for({0xffffffff81000104}) == []  # written already
