"""Grammar states are values: dropping the automaton's caches (past `max_states`) must not
change any mask, any transition, or invalidate states a caller holds."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from structgen import Grammar
from structgen.constraints.grammar import GrammarAutomaton
from structgen.automata.regex import regex_to_dfa

pytestmark = pytest.mark.model
JSON = (Path(__file__).resolve().parent.parent / "grammars" / "json.lark").read_text()


def _masks_along(automaton: GrammarAutomaton, model, text: str) -> list[np.ndarray]:
    """The sorted allowed ids before each token of `text` (which the automaton must accept)."""
    state, out = automaton.start, []
    for token in model.tokenizer.encode(text, add_special_tokens=False):
        out.append(np.sort(automaton.allowed_ids(state)))
        state = automaton.advance(state, token)
        assert state is not None
    return out


def test_masks_survive_cache_drops(smollm2) -> None:
    text = '{"name": "Ada", "tags": ["x", 1.5e3, true], "nested": {"a": [null, {}]}}'
    ids = smollm2.tokenizer.encode(text, add_special_tokens=False)
    reference = Grammar(JSON).compile(smollm2.vocab)
    small = Grammar(JSON).compile(smollm2.vocab)
    small.max_states = 50  # forces a drop on almost every call
    ref_state, state, held, ref_held = reference.start, small.start, [], []
    for token in ids:
        assert np.array_equal(np.sort(reference.allowed_ids(ref_state)), np.sort(small.allowed_ids(state)))
        assert reference.is_accepting(ref_state) == small.is_accepting(state)
        held.append(state)
        ref_held.append(ref_state)
        ref_state, state = reference.advance(ref_state, token), small.advance(state, token)
        assert state is not None
    assert small.is_accepting(state)
    # states taken before many drops are still valid values: same masks, same plans
    for old, ref_old in zip(held, ref_held):
        assert np.array_equal(np.sort(small.allowed_ids(old)), np.sort(reference.allowed_ids(ref_old)))
        assert small.tokens_to_complete(old) == reference.tokens_to_complete(ref_old)


@pytest.mark.parametrize("grammar, text", [
    ("json.lark", '{"name": "Ada",\n "tags": ["x", 1.5e3, true], "n": {"a": [null, {}]}}'),
    ("c_like.lark", "int f(int x) { return x * 2 + y; }"),
    ("arithmetic.lark", "(1 + 2.5) * -3 / 4^2"),
    ("python_expr.lark", "f(x, key=lambda k: -k)[0]"),
    ("sqlite_select.lark", "SELECT a FROM t WHERE b"),
])
def test_shape_split_equals_full_walk(smollm2, grammar, text) -> None:
    """Masks built from shared per-shape parts (tokens inside a lexeme, plus leaving tokens —
    walked per state over their own trie, or decided one byte further down the trie, in the
    view of their next byte) equal a plain trie walk, however deep the views go."""
    source = (Path(__file__).resolve().parent.parent / "grammars" / grammar).read_text()
    compiled = Grammar(source).compiled
    reference = GrammarAutomaton(compiled, smollm2.vocab)
    automata = []
    for deeper_min, max_prefix in [(1, 99), (32, 3), (10**9, 0)]:
        automaton = GrammarAutomaton(compiled, smollm2.vocab)
        automaton.DEEPER_MIN, automaton.DEEPER_MAX_PREFIX = deeper_min, max_prefix
        automata.append(automaton)
    eos = list(smollm2.vocab.eos_ids)
    states = [a.start for a in [reference, *automata]]
    for token in smollm2.tokenizer.encode(text, add_special_tokens=False):
        expected = np.sort(reference.trie.walk(reference, reference._id(states[0]))[0])
        for automaton, state in zip(automata, states[1:]):
            got = automaton.allowed_ids(state)
            assert len(np.unique(got)) == len(got)  # the parts (inside, leaving, views) are disjoint
            assert np.array_equal(np.sort(got[~np.isin(got, eos)]), expected)
            mask = automaton.mask(state).numpy()
            assert np.array_equal(np.flatnonzero(mask), np.sort(got))
        states = [a.advance(state, token) for a, state in zip([reference, *automata], states)]
        assert None not in states


@pytest.mark.parametrize("grammar, text", [
    ("sqlite_select.lark", "select T1.name, COUNT(*) aS n FROM t WHERE b > 2"),
    ("python_expr.lark", "f(x)[0] ** -k"),
])
def test_shape_split_equals_full_walk_gemma(gemma, grammar, text) -> None:
    """As above on Gemma-3's 262k tokens, where the per-lexeme splits drop most tokens leaving
    a lexeme without the parser (`é` after an identifier lexes as nothing; case-folded
    keywords make `ı` and `ſ` start lexemes): masks equal a plain trie walk."""
    source = (Path(__file__).resolve().parent.parent / "grammars" / grammar).read_text()
    compiled = Grammar(source).compiled
    reference = GrammarAutomaton(compiled, gemma.vocab)
    automaton = GrammarAutomaton(compiled, gemma.vocab)
    eos = list(gemma.vocab.eos_ids)
    ref_state, state = reference.start, automaton.start
    for token in gemma.tokenizer.encode(text, add_special_tokens=False):
        expected = np.sort(reference.trie.walk(reference, reference._id(ref_state))[0])
        got = automaton.allowed_ids(state)
        assert len(np.unique(got)) == len(got)
        assert np.array_equal(np.sort(got[~np.isin(got, eos)]), expected)
        ref_state, state = reference.advance(ref_state, token), automaton.advance(state, token)
        assert state is not None


def test_free_lexer_caps_keep_masks_exact(smollm2, monkeypatch) -> None:
    """Past their state caps the free lexer and the lexeme walks stop pruning (`ANY`); masks
    stay those of a plain trie walk."""
    from structgen.constraints import grammar as engine

    monkeypatch.setattr(engine._FreeLexer, "MIN_VOCAB", 0)  # (SmolLM2 skips the free lexer)
    monkeypatch.setattr(engine._FreeLexer, "MAX_STATES", 40)
    monkeypatch.setattr(engine._LexemeWalk, "MAX_STATES", 300)
    monkeypatch.setattr(engine, "_FREE_LEXERS", engine.weakref.WeakKeyDictionary())
    for grammar, text in [("sqlite_select.lark", "select T1.name, COUNT(*) aS n FROM t WHERE b > 'x'"),
                          ("python_expr.lark", "f(x)[0] ** -k if a else 'ü'")]:
        source = (Path(__file__).resolve().parent.parent / "grammars" / grammar).read_text()
        compiled = Grammar(source).compiled
        reference = GrammarAutomaton(compiled, smollm2.vocab)
        automaton = GrammarAutomaton(compiled, smollm2.vocab)
        eos = list(smollm2.vocab.eos_ids)
        ref_state, state = reference.start, automaton.start
        for token in smollm2.tokenizer.encode(text, add_special_tokens=False):
            expected = np.sort(reference.trie.walk(reference, reference._id(ref_state))[0])
            got = automaton.allowed_ids(state)
            assert np.array_equal(np.sort(got[~np.isin(got, eos)]), expected)
            ref_state, state = reference.advance(ref_state, token), automaton.advance(state, token)
        assert len(automaton._lexer._sets) <= 40


def test_lexeme_splits_shared_across_schemas(smollm2, monkeypatch) -> None:
    """A second schema whose terminals are the same DFA objects (string bodies, integers) finds
    their per-lexeme splits already computed by the first, and its masks equal those of an
    engine that starts cold."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine

    hits: list[int] = []

    class Counting(dict):
        def get(self, key, default=None):  # type: ignore[override]
            if key in self:
                hits.append(1)
            return super().get(key, default)

    original = engine._SharedLexeme.__init__

    def init(self, starts: np.ndarray) -> None:
        original(self, starts)
        self.splits = Counting()

    monkeypatch.setattr(engine._SharedLexeme, "__init__", init)
    monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
    # (shape splits shared across automata would serve the second schema a level up)
    monkeypatch.setattr(engine, "_SHAPE_SPLITS", engine.OrderedDict())
    monkeypatch.setattr(engine, "_SHAPE_SPLITS_MAX", 0)
    first = JsonSchema({"type": "object", "properties": {"name": {"type": "string"},
                                                         "age": {"type": "integer"}},
                        "required": ["name", "age"]}).compiled
    second = JsonSchema({"type": "object", "properties": {"title": {"type": "string"},
                                                          "n": {"type": "integer"}},
                         "required": ["title", "n"]}).compiled
    assert {id(d) for d in first.terminal_dfas} & {id(d) for d in second.terminal_dfas}

    def masks(compiled, text: str) -> list[np.ndarray]:
        return _masks_along(GrammarAutomaton(compiled, smollm2.vocab), smollm2, text)

    masks(first, '{"name":"Ada Lovelace","age":36}')
    hits.clear()
    warm = masks(second, '{"title":"Notes on the engine","n":1843}')
    assert hits  # splits computed for the first schema served the second
    monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
    monkeypatch.setattr(engine, "_FREE_LEXERS", engine.weakref.WeakKeyDictionary())
    cold = masks(second, '{"title":"Notes on the engine","n":1843}')
    assert len(warm) == len(cold)
    assert all(np.array_equal(w, c) for w, c in zip(warm, cold))


def test_shape_splits_shared_across_automata(smollm2, monkeypatch) -> None:
    """A new schema's start state has the shape of others' (whitespace, then `{`): its split is
    the one another automaton built, and its masks equal those of an engine that starts cold."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine

    monkeypatch.setattr(engine, "_SHAPE_SPLITS", engine.OrderedDict())
    first = JsonSchema({"type": "object", "properties": {"a": {"type": "boolean"}}}).compiled
    second = JsonSchema({"type": "object", "properties": {"b": {"type": "null"}}}).compiled
    one = GrammarAutomaton(first, smollm2.vocab)
    two = GrammarAutomaton(second, smollm2.vocab)
    split = one._shape_split(one._id(one.start), one.root)
    assert two._shape_split(two._id(two.start), two.root) is split
    text = '{"b":null}'
    warm = _masks_along(GrammarAutomaton(second, smollm2.vocab), smollm2, text)
    monkeypatch.setattr(engine, "_SHAPE_SPLITS", engine.OrderedDict())
    monkeypatch.setattr(engine, "_SHAPE_SPLITS_MAX", 0)
    cold = _masks_along(GrammarAutomaton(second, smollm2.vocab), smollm2, text)
    assert len(warm) == len(cold) and all(np.array_equal(w, c) for w, c in zip(warm, cold))
    assert not engine._SHAPE_SPLITS  # (none kept at size 0)


def test_schema_grammars_skip_the_free_lexer(gemma) -> None:
    """On a large vocabulary a Lark grammar prunes leaving tokens through its free lexer, while
    a JSON schema's grammar (delimited lexemes: little to prune, and a lexer per schema made
    first masks ~12x slower) does not build one walk of it."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine

    def walks(compiled, text: str) -> int:
        automaton = GrammarAutomaton(compiled, gemma.vocab)
        state = automaton.start
        for token in gemma.tokenizer.encode(text, add_special_tokens=False):
            automaton.allowed_ids(state)
            state = automaton.advance(state, token)
        return len(engine._free_lexer(compiled)._walks)

    schema = JsonSchema({"type": "object", "properties": {"name": {"type": "string"}}}).compiled
    assert walks(schema, '{"name": "Ada"}') == 0
    lark = Grammar((Path(__file__).resolve().parent.parent / "grammars" / "c_like.lark")
                   .read_text()).compiled
    assert walks(lark, "int f(int x) { return x + 1; }") > 0


def test_walks_build_sibling_transitions_together(smollm2, monkeypatch) -> None:
    """A depth-first walk builds a new state's transitions on all the sibling bytes it will
    read in one fill (`_next`'s siblings), and the masks are those of byte-by-byte fills."""
    source = (Path(__file__).resolve().parent.parent / "grammars" / "python_expr.lark").read_text()
    compiled = Grammar(source).compiled
    fills = {"together": 0, "alone": 0}
    fill = GrammarAutomaton._fill

    def counted(self, k, data):
        fills[self.mode] += 1
        return fill(self, k, data)

    monkeypatch.setattr(GrammarAutomaton, "_fill", counted)
    together = GrammarAutomaton(compiled, smollm2.vocab)
    alone = GrammarAutomaton(compiled, smollm2.vocab)
    together.mode, alone.mode = "together", "alone"
    next_one = GrammarAutomaton._next
    alone._next = lambda k, b, siblings=None: next_one(alone, k, b)  # one byte per fill
    states = [together.start, alone.start]
    for token in smollm2.tokenizer.encode("sorted(d.keys(), key=lambda k: -k)[0] + [x ** 2]",
                                          add_special_tokens=False):
        masks = [a.allowed_ids(s) for a, s in zip((together, alone), states)]
        assert np.array_equal(np.sort(masks[0]), np.sort(masks[1]))
        states = [a.advance(s, token) for a, s in zip((together, alone), states)]
    assert fills["together"] < 0.6 * fills["alone"], fills


def _string_but_keys(keys: str = "name|nickname|title|apiVersion|a|na"):
    """A JSON string that spells none of a few keys: the key terminal of additionalProperties."""
    from structgen.automata.bytedfa import dfa_product
    from structgen.automata.regex import regex_to_dfa

    string = regex_to_dfa(r'"([^"\\\x00-\x1f]|\\["\\/bfnrtu])*"')
    return dfa_product(string, regex_to_dfa(f'"({keys})"'), "andnot")


def _equivalence_classes(a, b) -> tuple[np.ndarray, np.ndarray]:
    """Language classes of the states of DFAs a and b, by Moore's partition refinement over
    their disjoint union (with one dead state): the oracle for `_Bisimilar.equivalent`."""
    n = a.n_states + b.n_states
    table = np.concatenate([np.where(a.transitions >= 0, a.transitions, n),
                            np.where(b.transitions >= 0, b.transitions + a.n_states, n),
                            np.full((1, 256), n)])
    classes = np.concatenate([a.accepting, b.accepting, [False]]).astype(np.int64)
    while True:
        signature = np.concatenate([classes[:, None], classes[table]], axis=1)
        _, refined = np.unique(signature, axis=0, return_inverse=True)
        refined = refined.ravel()
        if len(np.unique(refined)) == len(np.unique(classes)):
            return refined[: a.n_states], refined[a.n_states : n]
        classes = refined


def test_first_byte_walk_table_is_its_definition() -> None:
    """Every entry of `_FirstByteWalk`'s table (built with whole-array steps, for `step`) is
    what its doc defines: phase 0 -> 1 on a byte the DFA reads; 1 -> 2 where the lexeme could
    have ended before a start byte; dead leads to the sink, or to the absorbing state once it
    could end. `first_step` (phase 0, read off the DFA's row) agrees with its phase-0 rows."""
    from structgen.constraints.grammar import _FirstByteWalk

    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    for dfa in (_string_but_keys(), Grammar(JSON).compiled.terminal_dfas[0],
                regex_to_dfa(r"(ab|a)*c?")):
        quick, n = _FirstByteWalk(dfa, starts), dfa.n_states
        table = quick._table.reshape(-1, 256)
        assert table.shape == (3 * n + 3, 256) and quick.sink == 3 * n + 1
        for s in range(n):
            for b in range(256):
                t = int(dfa.transitions[s, b])
                could_end = bool(dfa.accepting[s] and starts[b])
                for phase in range(3):
                    if t >= 0:
                        want = 3 * t + (1 if phase == 0 else 2 if phase == 2 or could_end else 1)
                    else:
                        want = 3 * n + (2 if phase == 2 or phase == 1 and could_end else 1)
                    assert table[3 * s + phase, b] == want, (s, phase, b)
            assert np.array_equal(quick.first_step(s, np.arange(256)), table[3 * s])
        assert (table[3 * n : 3 * n + 2] == 3 * n + 1).all()
        assert (table[3 * n + 2] == 3 * n + 2).all()


def test_same_walk_proves_only_equal_walks(smollm2) -> None:
    """`_same_walk` proves two DFA states alike only when walking the trie from them classifies
    every token alike (inside, could leave, dead); on a string that must not spell some keys it
    proves most key-prefix states alike, though no two of them are equivalent as DFA states."""
    from structgen.constraints.grammar import _FirstByteWalk, _root_view, _same_walk

    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    proved = 0
    for dfa in (_string_but_keys(), Grammar(JSON).compiled.terminal_dfas[0]):
        quick = _FirstByteWalk(dfa, starts)
        trie = _root_view(smollm2.vocab).local_trie
        walks = []
        for s in range(dfa.n_states):
            local, ends = trie.walk(quick, 3 * s)
            inside = ends // 3 < quick.n
            walks.append((frozenset(local[inside].tolist()), frozenset(local[~inside].tolist())))
        for x in range(dfa.n_states):
            for y in range(x + 1, dfa.n_states):
                if _same_walk(quick, 3 * x, 3 * y, trie, budget=10**6):
                    assert walks[x] == walks[y], (x, y)
                    proved += 1
    assert proved >= 10


@pytest.mark.parametrize("compiled", [True, False])
def test_bisimilar_finds_language_equivalent_states(compiled: bool) -> None:
    """`_Bisimilar.equivalent` (searched in C or in Python) pairs two DFAs' states exactly when
    they accept the same strings (Moore's refinement as the oracle), across key DFAs of
    different key sets and plain JSON string content; with a tiny exploration limit it only
    ever says "no" more often."""
    from structgen.constraints.grammar import _Bisimilar, _FirstByteWalk
    from structgen.vocab import native

    if compiled and not native.available():
        pytest.skip(f"no compiled kernels here: {native.reason}")

    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    dfas = [_string_but_keys(), _string_but_keys("id|items|name"),
            Grammar(JSON).compiled.terminal_dfas[0],
            regex_to_dfa(r"a[bc]*"), regex_to_dfa(r"a[bc]+")]  # (alike but for acceptance)
    found = 0
    for a in dfas:
        for b in dfas:
            ca, cb = _equivalence_classes(a, b)
            pairing = _Bisimilar(_FirstByteWalk(a, starts), _FirstByteWalk(b, starts))
            narrow = _Bisimilar(pairing.a, pairing.b)
            narrow.LIMIT = 2
            if not compiled:
                pairing._compiled = narrow._compiled = None  # the Python search
            for p in range(a.n_states):
                for q in range(b.n_states):
                    assert pairing.equivalent(p, q) == (ca[p] == cb[q]), (p, q)
                    assert not narrow.equivalent(p, q) or ca[p] == cb[q]
                    found += bool(a is not b and ca[p] == cb[q])
            assert isinstance(pairing._compiled, native.EquivalenceSearch) == compiled
    assert found >= 10


def test_same_walk_across_dfas_proves_only_equal_walks(smollm2) -> None:
    """Proofs against another DFA's state (`across`) hold only where the two walks classify
    every token alike, and they hold between key DFAs of different key sets: past their key
    prefixes both are plain string content."""
    from structgen.constraints.grammar import _Bisimilar, _FirstByteWalk, _root_view, _same_walk

    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    trie = _root_view(smollm2.vocab).local_trie
    a, b = _string_but_keys(), _string_but_keys("id|items|name|n")
    qa, qb = _FirstByteWalk(a, starts), _FirstByteWalk(b, starts)
    pairing = _Bisimilar(qa, qb)

    def walks(quick, dfa):
        out = []
        for s in range(dfa.n_states):
            local, ends = trie.walk(quick, 3 * s)
            inside = ends // 3 < quick.n
            out.append((frozenset(local[inside].tolist()), frozenset(local[~inside].tolist())))
        return out

    wa, wb = walks(qa, a), walks(qb, b)
    proved = refuted = 0
    for x in range(a.n_states):
        for y in range(b.n_states):
            same = _same_walk(qa, 3 * x, 3 * y, trie, budget=10**6, across=pairing)
            assert same == (wa[x] == wb[y]), (x, y)
            proved += bool(same)
            refuted += not same
    assert proved >= 10 and refuted >= 10


def test_compiled_proofs_give_the_walked_split(smollm2) -> None:
    """A reference's split patched with the compiled differences (`_SharedLexeme._differences`)
    from another state of the same DFA or of another DFA is exactly the split a walk gives:
    no differences (the reference's own split), or a few tokens moved; on a string that must
    not spell some keys, many of each; walks too unlike are not known (past the budget) or
    left to a walk (most tokens differ)."""
    from structgen.constraints import grammar as engine
    from structgen.vocab import native

    if not native.available():
        pytest.skip(f"no compiled kernels here: {native.reason}")
    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    view = engine._root_view(smollm2.vocab)
    tokens = view.local_trie.preorder().tokens
    a, b = _string_but_keys(), _string_but_keys("id|items|name|n")
    qa, qb = engine._FirstByteWalk(a, starts), engine._FirstByteWalk(b, starts)
    owner = engine._SharedLexeme(starts)
    walked_a = [qa.split(view.local_trie, s) for s in range(a.n_states)]
    walked_b = [qb.split(view.local_trie, s) for s in range(b.n_states)]
    pairing = engine._Bisimilar(qa, qb)

    def as_sets(split):
        return sorted(split[0].tolist()), sorted(split[1].tolist())

    kinds = {"same": 0, "patched": 0, "unknown": 0, "walk": 0}
    for across, refs in ((None, walked_a), (pairing, walked_b)):
        for x in range(a.n_states):
            for y in range(0, len(refs), 3):
                rows = owner._differences(qa, x, [0, y, refs[y], b""], view, across)
                if rows is None or rows is False:
                    kinds["unknown" if rows is None else "walk"] += 1
                    continue
                split = engine._patched(refs[y], rows, tokens, len(view.ids))
                assert as_sets(split) == as_sets(walked_a[x]), (x, y)
                kinds["patched" if len(rows) else "same"] += 1
    assert kinds["same"] >= 10 and kinds["patched"] >= 10, kinds
    old = engine._SharedLexeme.DIFF_BUDGET
    try:
        engine._SharedLexeme.DIFF_BUDGET = 2
        assert owner._differences(qa, a.initial, [0, b.initial, walked_b[b.initial], b""], view,
                                  pairing) is None
    finally:
        engine._SharedLexeme.DIFF_BUDGET = old


def test_splits_taken_across_dfas(smollm2, monkeypatch) -> None:
    """A new key DFA's first large split is proved against another DFA's reference (the same
    array comes back, no walk) and equals its own walk."""
    from structgen.constraints import grammar as engine

    monkeypatch.setattr(engine, "_REFERENCES", {})
    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    view = engine._root_view(smollm2.vocab)
    a, b = _string_but_keys(), _string_but_keys("id|items|name|n")
    first = engine._SharedLexeme(starts).split(a, a.walk(a.initial, b'"x'), view)
    assert len(first[0]) >= engine._SharedLexeme.REFERENCE_MIN
    quick, state = engine._FirstByteWalk(b, starts), b.walk(b.initial, b'"')
    local, ends = view.local_trie.walk(quick, 3 * state)
    inside = ends // 3 < quick.n
    own = [sorted(local[inside].tolist()), sorted(local[~inside].tolist())]

    monkeypatch.setattr(engine.TokenTrie, "walk", lambda *args: pytest.fail("walked"))
    taken = engine._SharedLexeme(starts).split(b, state, view)
    assert taken is first
    assert [sorted(part.tolist()) for part in taken] == own


@pytest.mark.parametrize("compiled", [True, False])
def test_split_references_keep_masks_exact(compiled: bool, smollm2, monkeypatch) -> None:
    """Splits taken from a reference state (`_SharedLexeme.split`: the same, or patched where
    a few tokens differ, found compiled or by `_same_walk`) give the masks of splits all
    walked, along objects whose extra keys start like the named ones."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine
    from structgen.vocab import native

    if compiled and not native.available():
        pytest.skip(f"no compiled kernels here: {native.reason}")
    if not compiled:
        monkeypatch.setattr(native, "available", lambda: False)
    schema = {"type": "object", "properties": {"name": {"type": "string"},
                                               "nickname": {"type": "string"}},
              "additionalProperties": {"type": "integer"}}
    text = '{"namesake":1,"nick":2,"name":"x","nicknames":3,"title":4}'
    taken = []
    differences = engine._SharedLexeme._differences

    def counted(*args, **kwargs):
        got = differences(*args, **kwargs)
        taken.append(got is not None and got is not False)
        return got

    def masks() -> list[np.ndarray]:  # (every split computed afresh, none shared)
        monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
        monkeypatch.setattr(engine, "_FREE_LEXERS", engine.weakref.WeakKeyDictionary())
        monkeypatch.setattr(engine, "_SHAPE_SPLITS", type(engine._SHAPE_SPLITS)())
        monkeypatch.setattr(engine, "_REFERENCES", {})
        compiled = JsonSchema(schema, property_order="any").compiled
        return _masks_along(GrammarAutomaton(compiled, smollm2.vocab), smollm2, text)

    monkeypatch.setattr(engine._SharedLexeme, "_differences", counted)
    with_references = masks()
    assert any(taken)
    monkeypatch.setattr(engine._SharedLexeme, "REFERENCE_MIN", 10**9)
    walked = masks()
    assert len(with_references) == len(walked)
    assert all(np.array_equal(a, b) for a, b in zip(with_references, walked))


def test_single_split_masks_are_shared(smollm2) -> None:
    """States whose masks are one shape split's inside tokens plus the same walked leaving
    tokens share one mask tensor (kept by the split); every mask equals the allowed row built
    afresh, with EOS exactly when accepting."""
    from structgen import JsonSchema

    schema = {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+-[0-9]{3}$"}}
    automaton = GrammarAutomaton(JsonSchema(schema).compiled, smollm2.vocab)
    state, seen, shared = automaton.start, {}, 0
    tokens = smollm2.tokenizer.encode('["abcde-123","xyz-042","q-777"]', add_special_tokens=False)
    for token in [*tokens, None]:
        mask = automaton.mask(state)
        row = automaton._allowed_row(state)
        row[list(smollm2.vocab.eos_ids)] = automaton.is_accepting(state)
        assert np.array_equal(mask.numpy(), row)
        splits, walked = automaton._parts(state)
        if len(splits) == 1:
            key = (id(splits[0]), automaton.is_accepting(state), *(w.tobytes() for w in walked))
            shared += seen.get(key) is mask
            seen[key] = mask
        if token is not None:
            state = automaton.advance(state, token)
    assert automaton.is_accepting(state)
    assert shared >= 4  # positions inside `[a-z]+` and `[0-9]{3}` runs, and between items


def test_reference_proofs_give_up(smollm2, monkeypatch) -> None:
    """Proofs stop at their budget (unknown, not false), and a DFA and view whose proofs give
    up far more often than they hold stop trying them: splits are then walked, unchanged."""
    from structgen.constraints import grammar as engine

    dfa = _string_but_keys()
    starts = np.zeros(256, bool)
    starts[[ord(c) for c in ' ,:}]"']] = True
    view = engine._root_view(smollm2.vocab)
    quick = engine._FirstByteWalk(dfa, starts)
    trie = view.local_trie
    pairs = [(x, y) for x in range(dfa.n_states) for y in range(x + 1, dfa.n_states)
             if engine._same_walk(quick, 3 * x, 3 * y, trie, budget=10**6)]
    assert any(engine._same_walk(quick, 3 * x, 3 * y, trie, budget=1) is None for x, y in pairs)

    calls = []

    def never_sure(*args, **kwargs):
        calls.append(1)
        return None

    monkeypatch.setattr(engine._SharedLexeme, "_differences", never_sure)
    shared = engine._SharedLexeme(starts)
    for s in range(dfa.n_states):
        local, ends = trie.walk(quick, 3 * s)
        inside = ends // 3 < quick.n
        got = shared.split(dfa, s, view)
        assert np.array_equal(np.sort(got[0]), np.sort(local[inside]))
        assert np.array_equal(np.sort(got[1]), np.sort(local[~inside]))
    assert shared._references[view.key]  # references were kept, so proofs were tried ...
    assert 8 <= len(calls) < 8 + shared.REFERENCES  # ... until 8 gave up, then no more


def test_split_unions_equal_set_unions() -> None:
    """Shape splits combine per-lexeme splits with `_inside_union` (cached rows of large parts,
    shared when alone) and `_sorted_union`: equal to plain set unions, and a shared row is
    never written by a later union."""
    from structgen.constraints.grammar import _inside_union, _sorted_union

    rng = np.random.default_rng(0)
    n = 5000
    large = rng.choice(n, 4000, replace=False)
    alone = _inside_union([large], n)
    assert alone is _inside_union([large], n)  # the cached row itself
    before = alone.copy()
    for sizes in ([4000, 3], [10, 20, 300], [1], [], [4000, 900, 1]):
        parts = [large if k == 4000 else rng.choice(n, k, replace=False) for k in sizes]
        expect = set().union(*(p.tolist() for p in parts))
        assert set(np.flatnonzero(_inside_union(parts, n)).tolist()) == expect
        got = _sorted_union(parts, n)
        assert got.tolist() == sorted(expect)
    assert np.array_equal(alone, before)


def test_whitespace_runs_do_not_leave_whitespace(smollm2) -> None:
    """A schema's whitespace lexeme leaves only into what may follow it: tokens that are all
    whitespace and longer than a run (SmolLM2 has a newline + 32 spaces and longer) are dead
    in its split, not leaving tokens walked from every new state; a grammar that lets a run
    follow a run keeps them as leaving."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine

    view = engine._root_view(smollm2.vocab)
    tb = smollm2.vocab.token_bytes
    long_runs = {i for i, b in enumerate(tb) if b and len(b) > 32 and not b.strip(b" \t\n\r")}
    assert long_runs
    compiled = JsonSchema({"type": "object", "properties": {"a": {"type": "integer"}}},
                          whitespace="flexible").compiled
    ws = compiled.cfg.terminal_names.index("WS")
    lexer = engine._free_lexer(compiled)
    dfa = compiled.terminal_dfas[ws]
    inside, leaving = engine._lexeme_split(lexer, ws, dfa.initial, view, smollm2.vocab)
    assert not long_runs & set(view.ids[leaving].tolist())
    assert not long_runs & set(view.ids[inside].tolist())

    both = Grammar('start: "{" WS* "}"\nWS: /[ \\t\\n\\r]{1,32}/\n').compiled
    ws2 = both.cfg.terminal_names.index("WS")
    _, leaving2 = engine._lexeme_split(engine._free_lexer(both), ws2,
                                       both.terminal_dfas[ws2].initial, view, smollm2.vocab)
    assert long_runs <= set(view.ids[leaving2].tolist())


def test_key_literals_split_in_one_walk(smollm2, monkeypatch) -> None:
    """A key position's key literals get their splits from one batched walk, not a walk each,
    and the masks equal those of an engine that walks each alone."""
    from structgen import JsonSchema
    from structgen.constraints import grammar as engine
    from structgen.vocab import native

    if not native.available():
        pytest.skip(f"no compiled walk here: {native.reason}")
    schema = {"type": "object", "properties": {k: {"type": "integer"}
                                               for k in ("alpha", "beta", "gamma", "delta",
                                                         "epsilon", "zeta")}}
    text = '{"alpha":2,"gamma":1}'
    monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
    monkeypatch.setattr(engine, "_SHAPE_SPLITS", engine.OrderedDict())
    batches: list[int] = []
    singles: list[tuple[int, int]] = []
    many, one = native.Preorder.first_byte_splits, engine._FirstByteWalk.split
    monkeypatch.setattr(native.Preorder, "first_byte_splits",
                        lambda self, dfas, states: batches.append(len(dfas)) or
                        many(self, dfas, states))
    monkeypatch.setattr(engine._FirstByteWalk, "split",
                        lambda self, trie, state: singles.append((id(self.transitions), state))
                        or one(self, trie, state))
    compiled = JsonSchema(schema).compiled
    batched = _masks_along(GrammarAutomaton(compiled, smollm2.vocab), smollm2, text)
    assert batches and max(batches) >= 6  # the six key literals at the first key position
    keys = [compiled.terminal_dfas[t] for t in compiled.literal_keys]
    assert len(keys) == 6
    assert not {(id(d.transitions), d.initial) for d in keys} & set(singles)

    monkeypatch.setattr(engine, "BATCH_MIN", 10**9)
    monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
    monkeypatch.setattr(engine, "_FREE_LEXERS", engine.weakref.WeakKeyDictionary())
    monkeypatch.setattr(engine, "_SHAPE_SPLITS", engine.OrderedDict())
    alone = _masks_along(GrammarAutomaton(JsonSchema(schema).compiled, smollm2.vocab),
                         smollm2, text)
    assert len(batched) == len(alone)
    assert all(np.array_equal(a, b) for a, b in zip(batched, alone))


def _split(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(n, dtype=np.int64), np.empty(0, np.int64)


def test_shared_split_bytes_count_each_array_once_while_it_lives(monkeypatch) -> None:
    """The bound on shared splits counts the distinct arrays still alive: the states of a DFA
    that share a reference's split add nothing, and a freed split gives its bytes back (a
    bound that never gave back dropped every split, references included, once enough
    schemas had come and gone)."""
    import gc

    from structgen.constraints import grammar as engine

    monkeypatch.setattr(engine._SharedLexeme, "held_bytes", 0)
    monkeypatch.setattr(engine, "_COUNTED", {})
    shared = engine._SharedLexeme(np.ones(256, bool))
    split = _split(1000)
    shared.keep((1, ("", b"")), split)
    assert engine._SharedLexeme.held_bytes == 8000
    shared.keep((2, ("", b"")), split)  # another state, proved to have the same split
    other = engine._SharedLexeme(np.ones(256, bool))
    other.keep((5, ("", b"")), split)  # another DFA's state, proved alike
    assert engine._SharedLexeme.held_bytes == 8000
    shared.keep((3, ("", b"")), _split(10))
    assert engine._SharedLexeme.held_bytes == 8080
    del shared, split
    gc.collect()
    assert engine._SharedLexeme.held_bytes == 8000  # the small split went; `other` holds one
    del other
    gc.collect()
    assert engine._SharedLexeme.held_bytes == 0 and not engine._COUNTED


def test_shared_splits_dropped_past_the_bound_once(monkeypatch) -> None:
    """Past `MAX_BYTES` every registered lexeme lets go of its splits and references; what
    stays held elsewhere (a grammar's own cache) raises the bound, so that the next split
    kept does not drop everything again."""
    from structgen.constraints import grammar as engine

    monkeypatch.setattr(engine._SharedLexeme, "held_bytes", 0)
    monkeypatch.setattr(engine._SharedLexeme, "pinned_bytes", 0)
    monkeypatch.setattr(engine._SharedLexeme, "MAX_BYTES", 20_000)
    monkeypatch.setattr(engine, "_COUNTED", {})
    monkeypatch.setattr(engine, "_SHARED_LEXEMES", engine.weakref.WeakKeyDictionary())
    monkeypatch.setattr(engine, "_REFERENCES", {})
    dfa = regex_to_dfa("[a-z]+")
    shared = engine._SHARED_LEXEMES.setdefault(dfa, {})[b""] = engine._SharedLexeme(
        np.ones(256, bool))
    pinned = _split(1000)  # as if a grammar's cache held it too
    shared.keep((1, ("", b"")), pinned)
    shared.keep((2, ("", b"")), _split(1000))
    assert len(shared.splits) == 2
    shared.keep((3, ("", b"")), _split(1000))  # 24,000 bytes: past the bound
    assert list(shared.splits) == [(3, ("", b""))]
    assert engine._SharedLexeme.pinned_bytes == 8000
    assert engine._SharedLexeme.held_bytes == 16_000
    shared.keep((4, ("", b"")), _split(1000))
    assert len(shared.splits) == 2  # 24,000 held, 8,000 of them pinned: under the bound
    shared.keep((5, ("", b"")), _split(1000))
    assert list(shared.splits) == [(5, ("", b""))]
