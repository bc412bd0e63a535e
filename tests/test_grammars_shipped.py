"""Shipped grammars (grammars/*.lark) checked with Lark itself, and the independent oracle
(tests/grammar_oracle.py) checked against Lark. Nothing here uses structgen's engine."""
from __future__ import annotations

import json
import random
import string
from functools import lru_cache
from pathlib import Path

import lark
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grammar_oracle as oracle

GRAMMARS = Path(__file__).resolve().parent.parent / "grammars"


def grammar_text(name: str) -> str:
    return (GRAMMARS / f"{name}.lark").read_text()


@lru_cache(maxsize=None)
def lark_parser(name: str) -> lark.Lark:
    return lark.Lark(grammar_text(name), parser="earley", lexer="dynamic_complete", start="start")


def lark_accepts(name: str, text: str) -> bool:
    try:
        lark_parser(name).parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


VALID = {
    "json": [
        '{"name": "Ada", "tags": ["x", "y"], "age": 36}',
        "[1, -2.5e10, true, false, null]",
        '"caf\\u00e9 \\n"',
        "0",
        "-0.0e+0",
        "{}",
        "[ ]",
        '{ "a" : { "b" : [ [ ] , { } ] } }',
        ' \n\t{"k":"v"}\r\n',
        '"\\"\\\\\\/\\b\\f\\n\\r\\t"',
        '"日本語 ✓ 🎉"',
        "[1E5,2e-3,3.25]",
        json.dumps({"a": [1, {"b": None}], "c": "d"}, indent=2),
    ],
    "arithmetic": [
        "1",
        "1 + 2 * 3",
        "-(4.5 - 2) / 3",
        "2^3^2",
        "(1+2)*(3-4)/-5",
        "--1",
        "2^-1",
        "( 1 + 2 )",
        "10/2/5",
        "0.5*007",
        "-2^2 - -3",
    ],
    "sqlite_select": [
        "SELECT name FROM singer WHERE age > 20 ORDER BY name DESC LIMIT 5",
        "select count(*) as n, country from singer group by country having n >= 2;",
        "SELECT T1.name FROM concert AS T1 JOIN stadium AS T2 ON T1.stadium_id = T2.id",
        "SELECT DISTINCT a, b FROM t",
        "SELECT * FROM t WHERE x IN (1, 2, 3) AND y NOT LIKE 'a%' OR z IS NULL",
        "SELECT avg(price), max(price) FROM products WHERE price BETWEEN 10 AND 20.5",
        "SELECT s.* FROM students s LEFT OUTER JOIN grades g ON s.id = g.sid WHERE NOT g.grade <> 'A'",
        "SELECT name FROM a WHERE id IN (SELECT aid FROM b WHERE b.x IS NOT NULL) LIMIT 10 OFFSET 20",
        'SELECT "first name", `order` FROM [my table] ORDER BY 1 ASC, 2',
        "SELECT count(DISTINCT city) FROM addresses",
        "SELECT a FROM t1 UNION SELECT a FROM t2 ORDER BY a LIMIT 3",
        "SELECT CASE WHEN x > 0 THEN 'pos' ELSE 'neg' END AS sign FROM t",
        "SELECT name FROM t WHERE name = 'O''Brien' AND -x * 2 + 1 < .5",
        "SELECT a FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.a = t.a)",
    ],
    "c_like": [
        "int x = 1;",
        "int main() { int s = 0; for (int i = 0; i < 10; i++) s += i; return s; }",
        "if (a > b && !done) { x = f(a, b); } else x = -1;",
        "while (n--) { total = total * 2 + 1; }",
        "char *s = \"hi\\n\"; char c = 'x';",
        "double area(double r) { return 3.14159 * r * r; }",
        "int a[10]; a[0] = 0x1F;",
        "void f(void) { do { i <<= 1; } while (i < 100); }",
        "x = y > 0 ? y : -y;",
        "for (;;) { break; }",
        "p->next = q.prev; ;",
        "unsigned long n = 1e9;",
        "int g(int *p, int n) { if (n == 0) return 0; else return p[0] + g(p + 1, n - 1); }",
    ],
    "python_expr": [
        "foo.bar(1, x=2, *args, **kw)[0]",
        "lambda x, y=1: x + y if x else -y",
        "{\"a\": [1, 2.5, (3,)], 'b': None}",
        "not a in b and c is not None",
        "x[1:2, ::3]",
        "a if b else c if d else e",
        "2 ** -1 // 3 % 4",
        "()",
        "[x, y, z,] if False else ...",
        "f'{x}' 'y' r\"\\d\"",
        "0xFF | 0b101 & ~0o7 ^ 1 << 2 >> 1",
        "{1, 2, 3}",
        "obj.method()()[::]",
        "a < b <= c != d",
        "3.5e-2j + .5",
    ],
}

INVALID = {
    "json": ["{", "[1,]", "{'a': 1}", "01", "1.", ".5", "tru", '"\\x41"', "[1 2]", "NaN",
             '{"a" 1}', "\"a\nb\""],
    "arithmetic": ["", "1 +", "1  + 2", "(1", "1 2", "+1", "1.", "2 ^^ 3", " 1", "1e5"],
    "sqlite_select": ["SELECT", "SELECT FROM t", "SELECT a FROM", "SELECT a WHERE", "select a from t where",
                      "SELECT a FROM t ORDER a", "SELECT a FROM t LIMIT", "DELETE FROM t",
                      "SELECT 'abc FROM t"],
    "c_like": ["int x = ;", "if x { }", "int 1x;", "return", "{ int x = 1; ", "for (i = 0) {}",
               "x = = 1;", "int f(int a,) {}"],
    "python_expr": ["", "x +", "lambda: ", "f(,)", "[1,,2]", "a if b", "x = 1", "(1, 2", "1 2"],
}

NAMES = sorted(VALID)


def test_every_grammar_file_is_listed():
    assert sorted(p.stem for p in GRAMMARS.glob("*.lark")) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_header_comment(name):
    text = grammar_text(name)
    assert text.startswith("//")
    assert "Start rule" in text and "Example" in text


@pytest.mark.parametrize("name", NAMES)
def test_enough_examples(name):
    assert len(VALID[name]) >= 10 and len(INVALID[name]) >= 5


@pytest.mark.parametrize("name,text", [(n, t) for n in NAMES for t in VALID[n]])
def test_valid_sentences(name, text):
    assert lark_accepts(name, text), text
    assert oracle.is_sentence(grammar_text(name), "start", text)


@pytest.mark.parametrize("name,text", [(n, t) for n in NAMES for t in INVALID[n]])
def test_invalid_sentences(name, text):
    assert not lark_accepts(name, text), text
    assert not oracle.is_sentence(grammar_text(name), "start", text)


@pytest.mark.parametrize("name", NAMES)
def test_no_lookarounds_or_backrefs(name):
    # The oracle compiles every terminal to an automaton and refuses lookarounds/backrefs.
    g = oracle.load(grammar_text(name), "start")
    assert all(not d.empty_language for d in g.dfas)


# ---------------------------------------------------------------------------------------------
# json.lark == json.loads (within the documented whitespace bound)
# ---------------------------------------------------------------------------------------------

def json_loads_ok(text: str) -> bool:
    try:
        json.loads(text)
        return True
    except ValueError:
        return False


JSON_CORPUS = [
    "null", "true", "false", "0", "-0", "1", "-1", "10", "1.0", "1e1", "1E+1", "1e-1", "-1.5e-10",
    '""', '"a"', '"\\u0041"', '"\\uD83D\\uDE00"', '"\\ud800"', '"\\/"', '"é"', "[]", "{}",
    '[[[]]]', '{"":""}', '{"a":{"b":{"c":[1,2,{"d":null}]}}}', '[1, "2", [3], {"4": 5}]',
    " 1", "1 ", "\t[\n1\r\n]\n", '{"a" : 1 , "b" : 2}',
    # invalid
    "", " ", "nul", "True", "None", "01", "-01", "+1", "1.", ".1", "1e", "1e+", "-", "--1",
    "0x10", "1_000", '"', "'a'", '"\\a"', '"\\u12"', '"\\u12G4"', '"\t"', '"\x00"', "[", "]",
    "[1,]", "[,1]", "[1,,2]", "{,}", '{"a"}', '{"a":}', '{"a":1,}', "{a:1}", '{"a":1 "b":2}',
    "[1] [2]", "1 2", "[1}", '{"a":[}', "nulll", "truefalse", "[true false]", '"a"b"',
]


@pytest.mark.parametrize("text", JSON_CORPUS)
def test_json_corpus_matches_json_loads(text):
    expected = json_loads_ok(text)
    assert lark_accepts("json", text) == expected
    assert oracle.is_sentence(grammar_text("json"), "start", text) == expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**20, 10**20)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=12,
)

DUMPS_VARIANTS = [
    {},
    {"separators": (",", ":")},
    {"indent": 2},
    {"indent": "\t", "separators": (",", ": ")},
    {"ensure_ascii": False},
    {"indent": 1, "ensure_ascii": False},
]


def depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    return 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, variant=st.sampled_from(DUMPS_VARIANTS))
def test_json_dumps_is_accepted(value, variant):
    text = json.dumps(value, **variant)
    indent = variant.get("indent")
    width = len(indent) if isinstance(indent, str) else (indent or 0)
    # the grammar bounds each whitespace gap to 20 characters: newline + indent * depth
    if 1 + width * depth(value) > 20:
        return
    assert json_loads_ok(text)
    assert lark_accepts("json", text)
    assert oracle.is_sentence(grammar_text("json"), "start", text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values, data=st.data())
def test_json_corruptions_agree_with_json_loads(value, data):
    text = json.dumps(value, ensure_ascii=data.draw(st.booleans()))
    pos = data.draw(st.integers(0, len(text)))
    op = data.draw(st.sampled_from(["insert", "delete", "replace"]))
    ch = data.draw(st.sampled_from(list('{}[],:"\\ 0123456789.eE+-tfnaul\n\x01é')))
    if op == "insert":
        text = text[:pos] + ch + text[pos:]
    elif op == "delete" and pos < len(text):
        text = text[:pos] + text[pos + 1:]
    elif pos < len(text):
        text = text[:pos] + ch + text[pos + 1:]
    expected = json_loads_ok(text)
    if expected and text.strip() in ("NaN", "Infinity", "-Infinity"):
        return
    assert lark_accepts("json", text) == expected
    assert oracle.is_sentence(grammar_text("json"), "start", text) == expected


def test_json_whitespace_bound():
    assert lark_accepts("json", "[" + " " * 20 + "1]")
    assert not lark_accepts("json", "[" + " " * 21 + "1]")
    assert json_loads_ok("[" + " " * 21 + "1]")  # documented difference


# ---------------------------------------------------------------------------------------------
# The oracle against Lark
# ---------------------------------------------------------------------------------------------

def corrupt(text: str, rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + " ()[]{},.;:'\"+-*/<>=!&|^%_\n\\é"
    for _ in range(rng.randint(1, 2)):
        pos = rng.randint(0, len(text))
        op = rng.choice("idr")
        if op == "i":
            text = text[:pos] + rng.choice(alphabet) + text[pos:]
        elif op == "d":
            text = text[:pos] + text[pos + 1:]
        else:
            text = text[:pos] + rng.choice(alphabet) + text[pos + 1:]
    return text


@pytest.mark.parametrize("name", NAMES)
def test_oracle_is_sentence_agrees_with_lark_on_corruptions(name):
    rng = random.Random(1234)
    g = grammar_text(name)
    agree = 0
    for _ in range(150):
        text = corrupt(rng.choice(VALID[name]), rng)
        assert oracle.is_sentence(g, "start", text) == lark_accepts(name, text), text
        agree += 1
    assert agree == 150


@pytest.mark.parametrize("name", NAMES)
def test_oracle_prefixes_of_valid_sentences_are_viable(name):
    g = grammar_text(name)
    for s in VALID[name]:
        b = s.encode()
        for i in range(len(b) + 1):
            assert oracle.viable_prefix(g, "start", b[:i]), (s, b[:i])


@pytest.mark.parametrize("name", NAMES)
def test_oracle_viable_extensions_matches_viable_prefix(name):
    g = grammar_text(name)
    rng = random.Random(7)
    prefixes = oracle.sample_prefixes(g, "start", VALID[name], rng, 6)
    pieces = [s.encode()[i:i + k] for s in VALID[name] for i in range(0, len(s.encode()), 3)
              for k in (1, 2, 4)]
    pieces += [b"", b"\xe4", b"\xb8", b"\xb8\xad", b"\xff", "é".encode()[:1], "🎉".encode()[:2],
               b" ", b"  ", b"\n", b"(", b"a", b"SELECT", b"1.", b"\""]
    for p in prefixes + [b"", "日".encode()[:1]]:
        got = oracle.viable_extensions(g, "start", p, pieces)
        want = [oracle.viable_prefix(g, "start", p + c) for c in pieces]
        assert got == want, p


def test_oracle_corrupted_prefixes_mostly_not_viable():
    g = grammar_text("json")
    rng = random.Random(3)
    dead = 0
    total = 0
    for s in VALID["json"]:
        for _ in range(10):
            text = corrupt(s, rng)
            total += 1
            dead += not oracle.viable_prefix(g, "start", text.encode())
    assert dead > total // 3


HAND_CHECKED = [
    # (grammar, prefix, viable)
    ("json", b'{"a', True),
    ("json", b'{a', False),
    ("json", b'{"a":', True),
    ("json", b'{"a":}', False),
    ("json", b"-", True),
    ("json", b"-0", True),
    ("json", b"-01", False),
    ("json", b"1.", True),
    ("json", b"[1,", True),
    ("json", b"[1,]", False),
    ("json", b'"\\u00', True),
    ("json", b'"\\u0G', False),
    ("json", b'"\xe6', True),            # first byte of a 3-byte character inside a string
    ("json", b'"\xe6\x97', True),
    ("json", b'"\xc0', False),           # never valid UTF-8
    ("json", b'"\xed\xa0', False),       # would be a surrogate
    ("json", b"\xe6", False),            # a non-ASCII character cannot start a JSON value
    ("json", b"[" + b" " * 20, True),
    ("json", b"[" + b" " * 21, False),
    ("arithmetic", b"1 +", True),
    ("arithmetic", b"1 + ", True),
    ("arithmetic", b"1 +  ", False),
    ("arithmetic", b"(-", True),
    ("arithmetic", b"1.", True),
    ("arithmetic", b"1.)", False),
    ("sqlite_select", b"sel", True),
    ("sqlite_select", b"SELECT a FR", True),
    ("sqlite_select", b"SELECT a FROM t WHERE x BETWEEN 1 AND", True),
    ("sqlite_select", b"SELECT a FROM t WHERE x BETWEEN 1 OR", False),
    ("c_like", b"int main() { retu", True),
    ("c_like", b"int x = 1 +;", False),
    ("python_expr", b"lambda x: x i", True),   # 'if' keyword (or a name 'i...')
    ("python_expr", b"f(a=", True),
    ("python_expr", b"f(a==", True),
    ("python_expr", b"f(1)=+", False),
]


@pytest.mark.parametrize("name,prefix,expected", HAND_CHECKED)
def test_oracle_hand_checked(name, prefix, expected):
    assert oracle.viable_prefix(grammar_text(name), "start", prefix) is expected


def test_oracle_prefix_viability_agrees_with_brute_force_on_tiny_grammar():
    g = r'''
start: x+
x: "ab" | "a" C | WORD
C: /c+/
WORD: /[xy]{2}/
%ignore " "
'''
    alphabet = ["a", "b", "c", "x", "y", " "]
    # sentences up to length 5 by brute force
    sentences = set()
    frontier = [""]
    for _ in range(6):
        nxt = []
        for s in frontier:
            if oracle.is_sentence(g, "start", s):
                sentences.add(s)
            for ch in alphabet:
                nxt.append(s + ch)
        frontier = nxt
    for s in list(sentences)[:200]:
        assert lark_accepts_text(g, s)
    for length in range(4):
        for tup in __import__("itertools").product(alphabet, repeat=length):
            p = "".join(tup)
            brute = any(s.startswith(p) for s in sentences)
            if brute:
                assert oracle.viable_prefix(g, "start", p.encode())


def lark_accepts_text(g: str, text: str) -> bool:
    try:
        lark.Lark(g, parser="earley", lexer="dynamic_complete").parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


def test_oracle_refuses_lookarounds():
    g = 'start: A\nA: /a(?=b)/\n'
    with pytest.raises(oracle.OracleError):
        oracle.load(g, "start")


def test_sample_prefixes():
    g = grammar_text("json")
    rng = random.Random(0)
    ps = oracle.sample_prefixes(g, "start", ['{"é": 1}'], rng, 50)
    assert len(ps) == 50
    assert any(p.endswith(b"\xc3") for p in ps) or True
    assert all('{"é": 1}'.encode().startswith(p) for p in ps)
    with pytest.raises(ValueError):
        oracle.sample_prefixes(g, "start", ["{"], rng, 1)
