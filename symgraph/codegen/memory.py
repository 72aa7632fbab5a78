"""Static memory planning: one arena, buffers sharing it when their lifetimes do not overlap.

Every intermediate buffer's size is known when the code is generated (the
batch axis at its compiled size), and so is the statement that writes it and
the last statement that reads it. Placing buffers is then interval packing:
largest first, each at the lowest offset where it overlaps no buffer that is
alive at the same time (the greedy-by-size heuristic of TensorFlow Lite's
arena planner).
"""

from __future__ import annotations

import bisect
import heapq
import os
import re
from dataclasses import dataclass, replace

ALIGN = 16  # elements: 64 bytes for float32, so every buffer starts on a cache line


@dataclass(frozen=True)
class Buffer:
    name: str
    size: int  # elements at the compiled batch size
    first: int  # index of the statement that writes it
    last: int  # index of the last statement that reads it
    offset: int = 0  # elements from the start of the arena

    def overlaps(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


def round_up(size: int) -> int:
    return -(-size // ALIGN) * ALIGN


GREEDY_LIMIT = 500  # buffers; beyond it, greedy-by-size's quadratic time shows


def place(buffers: list[Buffer]) -> tuple[list[Buffer], int]:
    """Offsets for ``buffers`` (same order) and the arena size in elements.

    Greedy by size for models of ordinary size; for very large graphs, first
    fit in program order, which takes O(B log B) instead of O(B^2).
    """
    if len(buffers) > GREEDY_LIMIT:
        return place_in_order(buffers)
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.name)):
        offset = 0
        for other in sorted((p for p in placed if p.overlaps(buf)), key=lambda p: p.offset):
            if offset + round_up(buf.size) <= other.offset:
                break
            offset = max(offset, other.offset + round_up(other.size))
        placed.append(replace(buf, offset=offset))
    by_name = {b.name: b for b in placed}
    total = max((b.offset + round_up(b.size) for b in placed), default=0)
    return [by_name[b.name] for b in buffers], total


def place_in_order(buffers: list[Buffer]) -> tuple[list[Buffer], int]:
    """Each buffer, as its statement comes, at the lowest free offset it fits;
    freed after its last read, with neighbouring free blocks merged."""
    free: list[tuple[int, int]] = []  # (offset, size), sorted by offset
    ends: list[tuple[int, int, int]] = []  # heap of (last statement, offset, size)
    top = 0
    offsets: dict[str, int] = {}
    for buf in sorted(buffers, key=lambda b: (b.first, b.name)):
        while ends and ends[0][0] < buf.first:
            _, offset, size = heapq.heappop(ends)
            at = bisect.bisect(free, (offset, size))
            free.insert(at, (offset, size))
            if at + 1 < len(free) and free[at][0] + free[at][1] == free[at + 1][0]:  # merge with the next block
                free[at] = (offset, size + free.pop(at + 1)[1])
            if at > 0 and free[at - 1][0] + free[at - 1][1] == free[at][0]:  # and with the one before
                free[at - 1] = (free[at - 1][0], free[at - 1][1] + free.pop(at)[1])
        need = round_up(buf.size)
        slot = next((i for i, (_, size) in enumerate(free) if size >= need), None)
        if slot is None:
            offset, top = top, top + need
        else:
            offset, size = free[slot]
            free[slot:slot + 1] = [(offset + need, size - need)] if size > need else []
        offsets[buf.name] = offset
        heapq.heappush(ends, (buf.last, offset, need))
    placed = [replace(b, offset=offsets[b.name]) for b in buffers]
    return placed, max((b.offset + round_up(b.size) for b in placed), default=0)


def report(plans: dict[str, list[Buffer]], itemsize: int, total: int, spec_names: dict[str, str] | None = None) -> str:
    """The plan as a table: each function's buffers, their bytes, and the peak;
    a buffer under a mangled name (``spec_names``: variable -> spec name) says whose it is."""
    spec_names = spec_names or {}
    lines = []
    for function, buffers in plans.items():
        lines.append(f"{function}: {len(buffers)} buffers, {human_bytes(sum(b.size for b in buffers) * itemsize)} unshared")
        names = {b.name: f"{b.name} (the spec's {spec_names[b.name]})" if b.name in spec_names else b.name for b in buffers}
        width = max([6] + [len(name) for name in names.values()])
        lines.append(f"  {'buffer':<{width}}  {'bytes':>12}  {'offset':>12}  statements")
        for b in buffers:
            lines.append(f"  {names[b.name]:<{width}}  {b.size * itemsize:>12,}  {b.offset * itemsize:>12,}  {b.first}-{b.last}")
    lines.append(f"arena (peak): {total * itemsize:,} bytes ({human_bytes(total * itemsize)})")
    return "\n".join(lines)


UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """``"512M"`` -> bytes; K, M, G and T are powers of 1024, an optional trailing B is ignored."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} (write e.g. 512M or 2G)")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def available_memory() -> int | None:
    """Bytes this machine can still hand out (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(size: int) -> str:
    """A byte count for people: KiB, MiB or GiB."""
    if size < 1 << 20:
        return f"{size / 1024:,.1f} KiB"
    if size < 1 << 30:
        return f"{size / (1 << 20):,.2f} MiB"
    return f"{size / (1 << 30):,.2f} GiB"
