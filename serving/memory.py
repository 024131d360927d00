"""Giving the memory of dropped versions back to the operating system.

glibc's malloc keeps a heap (an arena) for each thread that ran requests. A
dropped version's graph and session are freed into those arenas, which keep the
pages, so a server that adopts new versions grew by about 55 MB a swap on the
default model and never gave it back. TF Serving avoids this by linking
tcmalloc. This server asks glibc to return free pages (`malloc_trim`) once the
last reference to a dropped version is gone, and caps the arenas at one a core
as it is built, so that what fragmentation remains is not spread over the heaps
of dozens of request threads (bench/version_memory.py measures each part).
"""
import ctypes
import ctypes.util
import functools
import gc
import logging
import weakref
from collections.abc import Callable

log = logging.getLogger(__name__)


_M_ARENA_MAX = -8  # mallopt's parameter number in glibc's malloc.h


@functools.cache  # find_library runs `ldconfig -p`: once per process, not per server or per dropped version
def _glibc(function: str) -> Callable[..., int] | None:
    """A function of glibc's malloc, or None where the C library has none (musl, macOS)."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c")), function)
    except (OSError, AttributeError):
        return None


def release_free_memory() -> None:
    """Return the free pages of every arena to the operating system."""
    trim = _glibc("malloc_trim")
    if trim:
        trim(0)


def cap_malloc_arenas(count: int) -> None:
    """Let malloc create at most `count` arenas (glibc's default is 8 a core); call before threads start."""
    mallopt = _glibc("mallopt")
    if mallopt:
        mallopt(_M_ARENA_MAX, count)


class DroppedVersions:
    """Versions no longer served that requests in flight may still hold; their memory is returned
    once gone."""

    def __init__(self, release: Callable[[], None] = release_free_memory) -> None:
        """`release` returns free memory to the system (a benchmark passes a no-op to see the growth)."""
        self._held: list[weakref.ref] = []
        self._release = release

    def add(self, model: object) -> None:
        self._held.append(weakref.ref(model))

    def release_gone(self) -> None:
        """If any dropped version has been let go since the last call, free its cycles and return
        the pages."""
        held = [ref for ref in self._held if ref() is not None]
        if len(held) < len(self._held):
            # a tf.Graph sits in reference cycles: without this its memory waits for the collector
            gc.collect()
            self._release()
            log.debug("returned the memory of %d dropped versions", len(self._held) - len(held))
        self._held = held
