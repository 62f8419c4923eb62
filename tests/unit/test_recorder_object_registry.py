"""The recorder's object registry over a run of days: bounded, the longest unseen object
forgotten first and written again if it comes back (readers keep an object's first row)."""

from __future__ import annotations

from recorder.objects import ObjectFacts, ObjectRegistry
from recorder.procfs import Mapping


class Registry(ObjectRegistry):
    """Facts made up from the path; counts the reads instead of opening files."""

    def __init__(self, max_known: int) -> None:
        super().__init__("/nonexistent", max_known=max_known)
        self.reads: list[str] = []

    def _read(self, pid: int, m: Mapping) -> ObjectFacts:  # type: ignore[override]
        self.reads.append(m.path)
        return ObjectFacts(f"bid-{m.path}", m.path, f"bid-{m.path}", "DYN", [], 1, m.dev)


def mapping(path: str, inode: int) -> Mapping:
    return Mapping(0x1000, 0x2000, "r-xp", 0, "08:01", inode, path)


def test_the_registry_is_bounded_and_a_forgotten_object_is_written_again():
    r = Registry(max_known=2)
    inode = {"/a": 1, "/b": 2, "/c": 3}
    ids = [r.object_for(1, mapping(p, inode[p]))[0] for p in ["/a", "/b", "/a", "/c"]]
    assert ids == ["bid-/a", "bid-/b", "bid-/a", "bid-/c"]
    # /a was seen again before /c came, so /b (the longest unseen) made room
    assert r.reads == ["/a", "/b", "/c"] and list(r.facts) == ["bid-/a", "bid-/c"]
    assert r.object_for(2, mapping("/a", 1)) == ("bid-/a", None)  # known: not written again
    oid, facts = r.object_for(3, mapping("/b", 2))
    assert oid == "bid-/b" and facts is not None  # forgotten: read and written again
    assert r.reads[-1] == "/b" and len(r.facts) == 2 and len(r) == 4
    assert len(r._ids) <= 2


def test_an_object_under_another_path_with_a_known_build_id_is_not_read_again():
    r = Registry(max_known=8)
    r.object_for(1, mapping("/usr/lib/libc.so.6", 5))
    again = Mapping(0x1000, 0x2000, "r-xp", 0, "00:2a", 9, "/lib/libc.so.6",
                    build_id="bid-/usr/lib/libc.so.6")
    assert r.object_for(2, again) == ("bid-/usr/lib/libc.so.6", None)
    assert r.reads == ["/usr/lib/libc.so.6"]
