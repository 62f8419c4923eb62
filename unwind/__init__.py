"""Unwind tables for the BPF unwinder: per ELF object, sorted rows saying how to find the
caller's frame (CFA, return address, rbp) at each address, built from .eh_frame/.debug_frame.

    table.py  the row format and rules (the contract with the BPF code), lookup, file format
    cfi.py    the CFI decoder: CIEs, FDEs, pointer encodings, DW_CFA_* programs -> rows
    build.py  ELF object -> table (layout, gaps, .debug_frame filling); bad input -> a
              TableProblem value
    cache.py  `table_for(path_or_fd, build_id)`: memory LRU + disk cache by build ID
    pyelf.py  a second decoder over pyelftools, for cross-checking cfi.py in tests

Pure Python, x86-64 only; depends on recording/ (ELF headers) and nothing else of the project.
"""
