"""Compiled kernels (`trie_walk.c`: the trie walk, under a transition table or a lexeme's
first-byte walk computed from its DFA, alone or two side by side; and two searches over DFAs:
states that reach a cycle, pairs of states that are equivalent; `automata/earley_core.c`: the
Earley recognizer), built with the system C compiler on first use.

A walk of the token trie under a full transition table is the one loop numpy serves badly:
level by level it pays ~10 numpy calls per depth even when a handful of nodes are alive (a
key literal's walk of SmolLM2's trie took ~70 µs, ~7 µs in C), and a dense walk gathers
every node's state at every level. The C walk visits the trie depth first, skips dead
subtrees with one jump, and emits an absorbing state's whole subtree as one range.

It is optional: without a C compiler (or with STRUCTGEN_NATIVE=0) `available()` is False and
`TokenTrie.walk` keeps its numpy walk, which gives the same tokens and states (tests compare
the two). The library is cached per source and platform under ~/.cache/structgen/native
(or $STRUCTGEN_CACHE/native): plain C functions over arrays, loaded with ctypes.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

SOURCES = (Path(__file__).with_name("trie_walk.c"),
           Path(__file__).parent.parent / "automata" / "earley_core.c")
FLAGS = ["-O2", "-shared", "-fPIC"]

#: Why the compiled kernels are not in use (None while they are, or before the first try).
reason: str | None = None
_lib: ctypes.CDLL | None = None
_tried = False


def _cache_dir() -> Path:
    from ..models import cache_dir  # (not at import: models imports the vocabulary package)
    return cache_dir() / "native"


def _compiler() -> list[str]:
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return shlex.split(cc)[:1] or ["cc"]


def _build() -> Path:
    """The shared library for this source, compiler and platform, built if not cached (to a
    temporary name, then renamed: processes building at once never load a partial file)."""
    source = b"".join(p.read_bytes() for p in SOURCES)
    cc = _compiler()
    tag = hashlib.sha256(source + " ".join(cc + FLAGS).encode() + platform.platform().encode()
                         ).hexdigest()[:16]
    out = _cache_dir() / f"trie_walk-{tag}.so"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            subprocess.run([*cc, *FLAGS, "-o", tmp, *map(str, SOURCES)],
                           check=True, capture_output=True, timeout=120)
            os.replace(tmp, out)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return out


def _load() -> ctypes.CDLL | None:
    global _lib, _tried, reason
    if _tried:
        return _lib
    _tried = True
    if os.environ.get("STRUCTGEN_NATIVE", "1") == "0":
        reason = "disabled by STRUCTGEN_NATIVE=0"
        return None
    try:  # PyDLL: the call keeps the GIL (it is short, and touches no Python object)
        lib = ctypes.PyDLL(str(_build()))
    except (OSError, subprocess.SubprocessError) as err:
        detail = getattr(err, "stderr", b"") or b""
        reason = f"not built: {err} {detail.decode(errors='replace')[:500]}".strip()
        return None
    fn = lib.structgen_trie_walk
    fn.restype = ctypes.c_int64
    ptr, i32, i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    fn.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, ptr, i32, i32, i32, ptr, ptr, ptr, ptr]
    split = lib.structgen_first_byte_split
    split.restype = ctypes.c_int64
    split.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, ptr, ptr, ptr, i32, i32, ptr, ptr, ptr]
    diff = lib.structgen_first_byte_diff
    diff.restype = ctypes.c_int64
    diff.argtypes = [ptr, ptr, ptr, ptr, i64, ptr, ptr, ptr, ptr, ptr, i32, i32, ptr, i32, ptr,
                     i32, i32, i64, ptr, ptr]
    many = lib.structgen_first_byte_split_many
    many.restype = ctypes.c_int64
    many.argtypes = [ptr, ptr, ptr, ptr, ptr, i64, ptr, i32, ptr, ptr, ptr, ptr, ptr, i64]
    endless = lib.structgen_endless
    endless.restype = i32
    endless.argtypes = [ptr, i32, i32, ptr, ptr]
    equivalent = lib.structgen_equivalent
    equivalent.restype = i32
    equivalent.argtypes = [ptr, ptr, ptr, ptr, i32, i32, i32, i32, ptr, ptr]
    lib.structgen_earley_new.restype = ptr
    lib.structgen_earley_new.argtypes = [i32, i32, i32, ptr, ptr, ptr, ptr, i32]
    lib.structgen_earley_free.restype = None
    lib.structgen_earley_free.argtypes = [ptr]
    for name in ("scan", "info", "items", "union"):
        fn = getattr(lib, f"structgen_earley_{name}")
        fn.restype = i32
        fn.argtypes = [ptr, i32, i32] if name == "scan" else [ptr, ptr, i32] if name == "union" \
            else [ptr, i32, ptr, i32]
    _lib = lib
    return lib


def available() -> bool:
    """Whether walks run compiled (building the library on the first call)."""
    return _load() is not None


class EndlessSearch:
    """The compiled `EndlessStates` search over one DFA's transitions: its verdicts per state
    and its stack, allocated once (the GIL is held through each call, so threads sharing it
    never see a search half done)."""

    def __init__(self, transitions: np.ndarray) -> None:
        self.transitions = np.ascontiguousarray(transitions, np.int32)
        n = len(self.transitions)
        self.verdict = np.zeros(n, np.int8)
        self.stack = np.empty(2 * n, np.int32)
        self._arguments = (self.transitions.ctypes.data, n)
        self._buffers = (self.verdict.ctypes.data, self.stack.ctypes.data)

    def __call__(self, root: int) -> bool:
        """Whether a cycle is reachable from state `root`. Only when `available()`."""
        assert _lib is not None
        return bool(_lib.structgen_endless(*self._arguments, root, *self._buffers))


class EquivalenceSearch:
    """The compiled `_Bisimilar.equivalent` for two DFAs (transitions and accepting arrays),
    with its verdicts per state pair (one byte each) and its buffers."""

    def __init__(self, a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                 limit: int) -> None:
        (ta, acc_a), (tb, acc_b) = a, b
        self._arrays = (np.ascontiguousarray(ta, np.int32), np.ascontiguousarray(acc_a, np.uint8),
                        np.ascontiguousarray(tb, np.int32), np.ascontiguousarray(acc_b, np.uint8))
        self.known = np.zeros(len(ta) * len(tb), np.int8)
        self.limit = limit
        self.buffer = np.empty(2 * (limit + 257), np.int64)
        self._arguments = (*(x.ctypes.data for x in self._arrays), len(tb))

    @property
    def addresses(self) -> tuple[int, int, int]:
        """(verdicts, limit, buffer) as `first_byte_diff` takes them."""
        return self.known.ctypes.data, self.limit, self.buffer.ctypes.data

    def __call__(self, p: int, q: int) -> bool:
        """Whether state p of the first DFA and q of the second are equivalent (within the
        limit). Only when `available()`."""
        assert _lib is not None
        return bool(_lib.structgen_equivalent(*self._arguments, p, q, self.limit,
                                              self.known.ctypes.data, self.buffer.ctypes.data))


def reset() -> None:
    """Forget the loaded library (tests switch STRUCTGEN_NATIVE and load again)."""
    global _lib, _tried, reason
    _lib, _tried, reason = None, False, None


class _Scratch(threading.local):
    """Output buffers reused across walks (fresh ones of ~2-3 MB per walk are mapped and
    unmapped by the allocator each time), with their addresses (`ndarray.ctypes` costs ~1 µs
    an array, a good part of a small walk). One set per thread: automata are per thread, and
    their walks may run in several at once."""

    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)
        self.states = np.empty(0, np.int32)
        self.stack = np.empty(0, np.int32)
        self.addresses = (0, 0, 0)
        self.back = np.zeros(1, np.int64)  # a split walk's count of tokens at the back
        self.back_address = self.back.ctypes.data

    def ensure(self, tokens: int, depth: int) -> None:
        if len(self.ids) < tokens or len(self.stack) < 2 * depth + 2:
            self.ids = np.empty(max(tokens, len(self.ids)), np.int64)
            self.states = np.empty(len(self.ids), np.int32)
            self.stack = np.empty(max(2 * depth + 2, len(self.stack)), np.int32)  # (two walks)
            self.addresses = (self.stack.ctypes.data, self.ids.ctypes.data,
                              self.states.ctypes.data)

    def take(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The first k outputs: copied when few; when at least half the buffers, the buffers
        themselves (copying ~200k ids cost more than the walk), replaced for the next walk."""
        ids, states = self.ids[:k], self.states[:k]
        if 2 * k < len(self.ids):
            return ids.copy(), states.copy()
        self.ids, self.states = np.empty(0, np.int64), np.empty(0, np.int32)
        return ids, states


_scratch = _Scratch()


@dataclass(frozen=True, eq=False)
class Preorder:
    """A token trie in preorder (see `trie_walk.c`): per node its byte, depth and subtree end;
    per node the start of its tokens in `tokens` (n_nodes + 1 entries)."""

    byte: np.ndarray  # uint8
    depth: np.ndarray  # int32
    end: np.ndarray  # int32
    tok_start: np.ndarray  # int32
    tokens: np.ndarray  # int64
    max_depth: int

    @cached_property
    def _arguments(self) -> tuple[int, ...]:
        return (self.byte.ctypes.data, self.depth.ctypes.data, self.end.ctypes.data,
                self.tok_start.ctypes.data, self.tokens.ctypes.data, len(self.byte))

    def walk(self, table: np.ndarray, sink: int, absorbing: int, state: int,
             first: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, end states) of every token the table reads from `state` without
        reaching `sink` (`TokenTrie.walk`'s result, in trie order). Only when `available()`."""
        lib = _lib
        assert lib is not None and table.dtype == np.int32 and table.flags.c_contiguous
        scratch = _scratch
        scratch.ensure(len(self.tokens), self.max_depth)
        first = _filter(first)  # (held here while the walk reads it)
        k = lib.structgen_trie_walk(*self._arguments, table.ctypes.data, sink, absorbing, state,
                                    None if first is None else first.ctypes.data,
                                    *scratch.addresses)
        return scratch.take(k)

    def first_byte_split(self, dfa: tuple[int, int, int, int], state: int
                         ) -> tuple[np.ndarray, np.ndarray]:
        """(tokens read inside, tokens that may leave) of a lexeme's first-byte walk
        (`_FirstByteWalk`) from `state`, its next states computed from the DFA as it goes:
        `dfa` holds the addresses of its transitions (int32, n x 256), accepting and start
        bytes (uint8) and n. Only when `available()`."""
        lib = _lib
        assert lib is not None
        scratch = _scratch
        total = len(self.tokens)
        scratch.ensure(total, self.max_depth)
        scratch.back[0] = total
        stack, ids, _ = scratch.addresses
        k = lib.structgen_first_byte_split(*self._arguments, *dfa, state, stack, ids,
                                           scratch.back_address)
        leaving = scratch.ids[total - int(scratch.back[0]):total].copy()
        return scratch.take(k)[0], leaving

    def first_byte_splits(self, dfas: list[tuple[int, int, int, int]], states: list[int]
                          ) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """`first_byte_split` of many lexemes in one walk (`dfas[j]` from `states[j]`): the
        same (inside, may leave) per lexeme, views of one array. None when they would not
        fit the buffer (large splits: walk those one by one). Only when `available()`."""
        lib = _lib
        assert lib is not None
        scratch = _scratch
        total = len(self.tokens)
        scratch.ensure(total, self.max_depth)
        n = len(dfas)
        addresses = np.array(dfas, np.int64).ravel()
        begin = np.array(states, np.int32)
        walking = np.empty(2 * (self.max_depth + 2) * n, np.int32)
        count = np.empty(self.max_depth + 2, np.int32)
        _, ids, _ = scratch.addresses
        k = lib.structgen_first_byte_split_many(
            *self._arguments, addresses.ctypes.data, n, begin.ctypes.data, walking.ctypes.data,
            walking[len(walking) // 2:].ctypes.data, count.ctypes.data, ids, total // 2)
        if k < 0:
            return None
        pairs = scratch.ids[: 2 * k].reshape(k, 2)
        pairs = pairs[np.argsort(pairs[:, 0], kind="stable")]  # (a copy: the buffer is reused)
        tokens = pairs[:, 1]
        bounds = np.searchsorted(pairs[:, 0], np.arange(2 * n + 1)).tolist()
        return [(tokens[bounds[2 * j]:bounds[2 * j + 1]],
                 tokens[bounds[2 * j + 1]:bounds[2 * j + 2]]) for j in range(n)]

    def first_byte_diff(self, a: tuple[int, int, int, int], b: tuple[int, int, int, int],
                        equivalence: tuple[int, int, int] | None, x: int, y: int,
                        budget: int) -> np.ndarray | None:
        """Where two first-byte walks classify tokens differently: A's from state x, B's from
        y, under the same start bytes (`a`, `b`: addresses of transitions, accepting, start
        bytes, and n, as `first_byte_split`). `equivalence`: `EquivalenceSearch.addresses`
        (A's DFA states against B's), None when A and B are one DFA. Returns (first, end,
        class under A) rows of ranges of `tokens` (class 0 inside, 1 dead, 2 may leave), or
        None past `budget` nodes. Only when `available()`."""
        lib = _lib
        assert lib is not None
        scratch = _scratch
        scratch.ensure(max(len(self.tokens), 3 * budget), self.max_depth)
        stack, ids, _ = scratch.addresses
        byte, depth, end, tok_start, _, n_nodes = self._arguments
        known, limit, buffer = equivalence if equivalence is not None else (None, 0, None)
        k = lib.structgen_first_byte_diff(byte, depth, end, tok_start, n_nodes, a[0], a[1],
                                          b[0], b[1], a[2], a[3], b[3], known, limit, buffer,
                                          x, y, budget, stack, ids)
        return None if k < 0 else scratch.ids[: 3 * k].reshape(k, 3).copy()


def _filter(first: np.ndarray | None) -> np.ndarray | None:
    """A walk's first-byte filter as the uint8 array the kernels read."""
    return None if first is None else np.ascontiguousarray(first, np.uint8)
