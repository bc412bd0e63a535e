"""GBNF → Lark translation (structgen.automata.gbnf): the language is preserved (checked with
Lark's dynamic_complete Earley parser and with the independent oracle), and errors point at
the line/column of the problem."""
from __future__ import annotations

import itertools

import lark
import pytest

import grammar_oracle as oracle
from structgen.automata.gbnf import gbnf_to_lark
from structgen.errors import GrammarError

JSON_GBNF = r'''
root   ::= object
value  ::= object | array | string | number | ("true" | "false" | "null") ws

object ::=
  "{" ws (
            string ":" ws value
    ("," ws string ":" ws value)*
  )? "}" ws

array  ::=
  "[" ws (
            value
    ("," ws value)*
  )? "]" ws

string ::=
  "\"" (
    [^"\\\x7F\x00-\x1F] |
    "\\" (["\\bfnrt] | "u" [0-9a-fA-F]{4}) # escapes
  )* "\"" ws

number ::= ("-"? ([0-9] | [1-9] [0-9]{0,15})) ("." [0-9]+)? ([eE] [-+]? [0-9] [1-9]{0,15})? ws

# Optional space: by convention, applied in this grammar after literal chars when allowed
ws ::= | " " | "\n" [ \t]{0,20}
'''

ARITH_GBNF = r'''
root  ::= (expr "=" ws term "\n")+
expr  ::= term ([-+*/] term)*
term  ::= ident | num | "(" ws expr ")" ws
ident ::= [a-z] [a-z0-9_]* ws
num   ::= [0-9]+ ws
ws    ::= [ \t\n]*
'''

LIST_GBNF = r'''
root ::= item+

# Excludes various line break characters
item ::= "- " [^\r\n\x0b\x0c\x85\u2028\u2029]+ "\n"
'''

CHESS_GBNF = r'''
# Specifies chess moves as a list in algebraic notation, using PGN conventions

# Force first move to "1. ", then any 1-2 digit number after, relying on model to follow the pattern
root    ::= "1. " move " " move "\n" ([1-9] [0-9]? ". " move " " move "\n")+
move    ::= (pawn | nonpawn | castle) [+#]?

# piece type, optional file/rank, optional capture, dest file & rank
nonpawn ::= [NBKQR] [a-h]? [1-8]? "x"? [a-h] [1-8]

# optional file & capture, dest file & rank, optional promotion
pawn    ::= ([a-h] "x")? [a-h] [1-8] ("=" [NBKQR])?

castle  ::= "O-O" "-O"?
'''

CASES = {
    "json": (
        JSON_GBNF,
        ['{}', '{"a": 1}', '{"a":[1, 2.5, -3e19, "x\\n\\u00e9"], "b": {"c": null}}',
         '{"k": true}\n', '{"k": [ ]}', '{"t": "caf\u00e9 \U0001F389"}',
         '{"a": {"b": {"c": []}}}', '{"n": 0.5e-1}', '{"x": "\\"\\\\"}',
         '{\n  "a": 1}'],
        ['[]', '{"a": 01x}', '{"a" 1}', '{"a": 1,}', "{'a': 1}", '{"a": "\\/"}', '{"a": tru}',
         '{"a": "\x01"}', '{  "a": 1}', '{"a": 1.}', ''],
    ),
    "arithmetic": (
        ARITH_GBNF,
        ["1=1\n", "a+b=c\n", "(x1 *2) -y_z = 42\n", "a = b\n1 = 2\n", "( a )=(b)\n",
         "foo/bar-3=0\n", "x\t=\ty\n", "((1))=2\n"],
        ["1=1", "=1\n", "A=1\n", "1==1\n", "a+=1\n", "(a=b\n", "1 2=3\n", ""],
    ),
    "list": (
        LIST_GBNF,
        ["- a\n", "- milk\n- eggs\n", "- caf\u00e9 \U0001F600\n- x y z\n", "- -\n", "- \t\n"],
        ["", "- \n", "-a\n", "- a", "- a\rb\n", "- a\u2028b\n", "* a\n", "- a\n\n"],
    ),
    "chess": (
        CHESS_GBNF,
        ["1. e4 e5\n2. Nf3 Nc6\n", "1. d4 d5\n2. c4 dxc4\n3. O-O O-O-O\n",
         "1. e4 e5\n12. Qxf7# Ke7\n", "1. e4 e5\n2. e8=Q+ Nbd7\n", "1. a3 h6\n99. Rh1 R1h2\n"],
        ["1. e4 e5\n", "1. e4 e5\n2. Nf3\n", "1. e9 e5\n2. a1 a2\n", "1. e4 e5\n0. a3 a4\n",
         "1. O-O-O-O e5\n2. a3 a4\n", "1. e4  e5\n2. a3 a4\n", "1. Pe4 e5\n2. a3 a4\n"],
    ),
}


def lark_accepts(lark_text: str, start: str, text: str) -> bool:
    try:
        lark.Lark(lark_text, parser="earley", lexer="dynamic_complete", start=start).parse(text)
        return True
    except lark.exceptions.LarkError:
        return False


@pytest.mark.parametrize("name", sorted(CASES))
def test_translation_preserves_language(name):
    gbnf, good, bad = CASES[name]
    lark_text, start = gbnf_to_lark(gbnf)
    assert start == "root"
    parser = lark.Lark(lark_text, parser="earley", lexer="dynamic_complete", start=start)
    for s in good:
        parser.parse(s)  # raises if rejected
        assert oracle.is_sentence(lark_text, start, s), s
    for s in bad:
        with pytest.raises(lark.exceptions.LarkError):
            parser.parse(s)
        assert not oracle.is_sentence(lark_text, start, s), s


@pytest.mark.parametrize("name", sorted(CASES))
def test_prefixes_of_good_sentences_are_viable(name):
    gbnf, good, _bad = CASES[name]
    lark_text, start = gbnf_to_lark(gbnf)
    for s in good:
        b = s.encode()
        for i in range(len(b) + 1):
            assert oracle.viable_prefix(lark_text, start, b[:i]), b[:i]


def _brute_language(gbnf: str, alphabet: str, max_len: int) -> set:
    lark_text, start = gbnf_to_lark(gbnf)
    parser = lark.Lark(lark_text, parser="earley", lexer="dynamic_complete", start=start)
    out = set()
    for n in range(max_len + 1):
        for tup in itertools.product(alphabet, repeat=n):
            s = "".join(tup)
            try:
                parser.parse(s)
                out.add(s)
            except lark.exceptions.LarkError:
                pass
    return out


def test_repetitions_exact_language():
    gbnf = r'''
root ::= a{2} "|" b{1,3} "|" c{2,} "|" d{,2} "|" e{0} "|" (f | g){0,1}
a ::= "a"
b ::= "b"
c ::= "c"
d ::= "d"
e ::= "e"
f ::= "f"
g ::= "g"
'''
    lark_text, start = gbnf_to_lark(gbnf)
    parser = lark.Lark(lark_text, parser="earley", lexer="dynamic_complete", start=start)

    def ok(s):
        try:
            parser.parse(s)
            return True
        except lark.exceptions.LarkError:
            return False

    for nb in range(5):
        for nc in range(5):
            for nd in range(4):
                for tail in ("", "f", "g", "fg", "e"):
                    s = "aa|" + "b" * nb + "|" + "c" * nc + "|" + "d" * nd + "||" + tail
                    want = 1 <= nb <= 3 and nc >= 2 and nd <= 2 and tail in ("", "f", "g")
                    assert ok(s) == want, s
                    assert oracle.is_sentence(lark_text, start, s) == want, s
    assert not ok("a|b|cc|||")
    assert not ok("aaa|b|cc|||")


def test_small_language_by_enumeration():
    gbnf = r'''
root ::= x ("," x)* | "<" [^<>a-b]? ">"
x ::= "a" | "ab"? "c" | [b-c]+
'''
    lang = _brute_language(gbnf, "abc,<>", 5)
    import re
    ref = re.compile(r"(?:a|(?:ab)?c|[b-c]+)(?:,(?:a|(?:ab)?c|[b-c]+))*|<[^<>a-b]?>")
    for n in range(6):
        for tup in itertools.product("abc,<>", repeat=n):
            s = "".join(tup)
            assert (s in lang) == bool(ref.fullmatch(s)), s


def test_escapes_and_classes():
    gbnf = r'''
root ::= "\x41\u00e9\U0001F600\t\n\\\"\r" q [\]\-\^\[\\] [^\x00-\x7f] . dot
q ::= "'" [\x27"] "/" [/] "#" [#]
dot ::= "."
'''
    lark_text, start = gbnf_to_lark(gbnf)
    head = "A\u00e9\U0001F600\t\n\\\"\r" + "'\"/" + "/" + "##"
    good = [head + c1 + c2 + c3 + "."
            for c1 in "]-^[\\" for c2 in ("\u00e9", "\u4e2d") for c3 in ("\n", "x", "\U0001F600")]
    for s in good:
        assert lark_accepts(lark_text, start, s), repr(s)
        assert oracle.is_sentence(lark_text, start, s)
    for s in [head + "a" + "\u00e9" + "x.", head + "]" + "e" + "x.", head + "]" + "\u00e9" + "x",
              head.replace("'", "x") + "]\u00e9x."]:
        assert not lark_accepts(lark_text, start, s), repr(s)
        assert not oracle.is_sentence(lark_text, start, s)


def test_rule_names_are_mapped_without_collisions():
    gbnf = r'''
root ::= my-rule my_rule My-Rule 2nd _x
my-rule ::= "a"
my_rule ::= "b"
My-Rule ::= "c"
2nd ::= "d"
_x ::= "e" | ""
'''
    lark_text, start = gbnf_to_lark(gbnf)
    assert lark_accepts(lark_text, start, "abcde")
    assert lark_accepts(lark_text, start, "abcd")
    assert not lark_accepts(lark_text, start, "aacde")
    assert not lark_accepts(lark_text, start, "abcee")


def test_continuation_lines_and_comments():
    gbnf = '''# leading comment
root ::= "a" # trailing comment
   | "b"
   "c"  # continuation of the second alternative
other ::= "unused"
'''
    lark_text, start = gbnf_to_lark(gbnf)
    assert lark_accepts(lark_text, start, "a")
    assert lark_accepts(lark_text, start, "bc")
    assert not lark_accepts(lark_text, start, "b")
    assert not lark_accepts(lark_text, start, "unused")


def test_empty_alternatives():
    lark_text, start = gbnf_to_lark('root ::= "x" ( | "y" ) z\nz ::= ""\n')
    assert lark_accepts(lark_text, start, "x")
    assert lark_accepts(lark_text, start, "xy")
    assert not lark_accepts(lark_text, start, "xyy")


@pytest.mark.parametrize("gbnf,line,column,fragment", [
    ('root ::= "a" b\n', 1, 14, "undefined rule 'b'"),
    ('root ::= "a"\nb ::= "x\n', 2, 7, "unterminated string"),
    ('root ::= "a"\nb = "x"\n', 2, 3, "'::='"),
    ('root ::= "a"\nb := "x"\n', 2, 3, "'::='"),
    ('root "a"\n', 1, 6, "expected '::='"),
    ('root ::= "\\q"\n', 1, 11, "unknown escape"),
    ('root ::= "\\x4"\n', 1, 11, "hex digits"),
    ('root ::= ("a" | "b"\n', 1, 10, "expected ')'"),
    ('root ::= "a" )\n', 1, 14, "unbalanced"),
    ('root ::= [a-\n', 1, 10, "unterminated character class"),
    ('root ::= [z-a]\n', 1, 11, "bad character range"),
    ('root ::= []\n', 1, 10, "empty character class"),
    ('root ::= "a"{3,1}\n', 1, 13, "maximum below minimum"),
    ('root ::= "a"{x}\n', 1, 13, "bad repetition"),
    ('root ::= * "a"\n', 1, 10, "must follow"),
    ('root ::= "a"\nroot ::= "b"\n', 2, 1, "defined twice"),
    ('root ::= "a" @\n', 1, 14, "unexpected character"),
])
def test_errors_name_line_and_column(gbnf, line, column, fragment):
    with pytest.raises(GrammarError) as info:
        gbnf_to_lark(gbnf)
    err = info.value
    assert fragment in str(err)
    assert (err.line, err.column) == (line, column)
    assert f"line {line}" in str(err)
    assert isinstance(err, ValueError)


def test_missing_root():
    with pytest.raises(GrammarError, match="root"):
        gbnf_to_lark('start ::= "a"\n')
