"""Parse the IR text form (see printer.py) back into a `Graph`.

Errors name the line and column. The parser builds nodes with the types written in the
text and checks each node as it reads it (`graph.node_problem`: known op, arity, the
written type against the op's inference rule), so a graph whose written types disagree
with its ops is rejected at the offending node's line; the whole-graph verifier runs
at the end. Parsing never evaluates anything from the text.
"""
from __future__ import annotations

import json
import re

from . import dtypes as dt
from .errors import IRError, ParseError
from .graph import Graph, Node, TensorType, node_problem

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|\#[^\n]*)
  | (?P<nl>\n)
  | (?P<value>%[A-Za-z0-9_.]+)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<unterminated>")
  | (?P<number>-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+|\.\d+(?:[eE][-+]?\d+)?|\d+))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(){}\[\],:=@])
""", re.VERBOSE)


class _Lexer:
    def __init__(self, text):
        self.toks = []
        line, col_start, pos = 1, 0, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if not m:
                raise ParseError(f"unexpected character {text[pos]!r}", line, pos - col_start + 1)
            kind = m.lastgroup
            if kind == "unterminated":
                raise ParseError("unterminated string", line, pos - col_start + 1)
            if kind == "nl":
                line += 1
                col_start = m.end()
            elif kind != "ws":
                self.toks.append((kind, m.group(), line, m.start() - col_start + 1))
            pos = m.end()
        self.toks.append(("eof", "", line, pos - col_start + 1))
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def next(self):
        t = self.toks[self.i]
        self.i += 1
        return t

    def error(self, msg, tok=None):
        _, text, line, col = tok or self.peek()
        return ParseError(f"{msg} (found {text!r})" if text else f"{msg} (found end of input)",
                          line, col)

    def expect(self, kind=None, text=None):
        t = self.peek()
        if (kind and t[0] != kind) or (text is not None and t[1] != text):
            raise self.error(f"expected {text or kind}")
        return self.next()

    def accept(self, text):
        if self.peek()[1] == text and self.peek()[0] in ("punct", "ident"):
            return self.next()
        return None


def _parse_type(lx):
    kind, text, line, col = lx.expect("ident")
    try:
        dtype = dt.from_short(text)
    except ValueError:
        raise ParseError(f"unknown dtype {text!r}", line, col) from None
    lx.expect("punct", "[")
    shape = []
    if not lx.accept("]"):
        while True:
            k, t, ln, c = lx.expect("number")
            if not t.isdigit():
                raise ParseError(f"dimension must be a non-negative integer, got {t}", ln, c)
            shape.append(int(t))
            if lx.accept("]"):
                break
            lx.expect("punct", ",")
    return TensorType(tuple(shape), dtype)


_KEYWORDS = {"true": True, "false": False, "none": None, "inf": float("inf"),
             "-inf": float("-inf"), "nan": float("nan")}


def _parse_attr_value(lx):
    kind, text, line, col = lx.peek()
    if kind == "punct" and text == "[":
        lx.next()
        items = []
        if lx.accept("]"):
            return ()
        while True:
            items.append(_parse_attr_value(lx))
            if lx.accept("]"):
                return tuple(items)
            lx.expect("punct", ",")
    lx.next()
    if kind == "number":
        return float(text) if any(ch in text for ch in ".eE") else int(text)
    if kind == "string":
        return _string_value(text, line, col)
    if kind == "ident":
        if text in _KEYWORDS:
            return _KEYWORDS[text]
        try:
            return dt.from_short(text)
        except ValueError:
            pass
    raise ParseError(f"bad attribute value {text!r}", line, col)


def _string_value(text, line, col):
    try:
        return json.loads(text)
    except ValueError as e:  # a bad escape such as "\q"
        raise ParseError(f"bad string {text}: {e.msg}", line, col) from None


def _parse_loc(lx):
    if lx.accept("@"):
        _, text, line, col = lx.expect("string")
        return _string_value(text, line, col)
    return None


def parse(text: str, verify: bool = True) -> Graph:
    lx = _Lexer(text)
    env: dict[str, Node] = {}
    lx.expect("ident", "graph")
    lx.expect("punct", "(")
    inputs = []
    if not lx.accept(")"):
        while True:
            tok = lx.expect("value")
            name = tok[1][1:]
            if name in env:
                raise lx.error(f"value %{name} defined twice", tok)
            lx.expect("punct", ":")
            ty = _parse_type(lx)
            n = Node("input", (), {"name": name}, ty, _parse_loc(lx))
            env[name] = n
            inputs.append(n)
            if lx.accept(")"):
                break
            lx.expect("punct", ",")
    lx.expect("punct", "{")
    nodes = list(inputs)
    outputs = []
    while True:
        tok = lx.peek()
        if tok[0] == "ident" and tok[1] == "return":
            lx.next()
            while lx.peek()[1] != "}":  # `return` alone: a graph with no outputs
                vt = lx.expect("value")
                if vt[1][1:] not in env:
                    raise lx.error(f"undefined value {vt[1]}", vt)
                outputs.append(env[vt[1][1:]])
                if not lx.accept(","):
                    break
            lx.expect("punct", "}")
            break
        vt = lx.expect("value")
        name = vt[1][1:]
        if name in env:
            raise lx.error(f"value %{name} defined twice", vt)
        lx.expect("punct", ":")
        ty = _parse_type(lx)
        lx.expect("punct", "=")
        optok = lx.expect("ident")
        lx.expect("punct", "(")
        args = []
        if not lx.accept(")"):
            while True:
                at = lx.expect("value")
                if at[1][1:] not in env:
                    raise lx.error(f"undefined value {at[1]}", at)
                args.append(env[at[1][1:]])
                if lx.accept(")"):
                    break
                lx.expect("punct", ",")
        attrs = {}
        if lx.accept("{"):
            while True:
                keytok = lx.expect("ident")
                key = keytok[1]
                if key in attrs:
                    raise lx.error(f"attribute {key} given twice", keytok)
                lx.expect("punct", "=")
                attrs[key] = _parse_attr_value(lx)
                if lx.accept("}"):
                    break
                lx.expect("punct", ",")
        from .registry import all_ops
        if optok[1] not in all_ops() or optok[1] == "input":
            raise lx.error(f"unknown op {optok[1]!r}", optok)
        n = Node(optok[1], args, attrs, ty, _parse_loc(lx))
        problem = node_problem(n) if verify else None
        if problem:
            raise ParseError(f"%{name} = {optok[1]}(...): {problem}", optok[2], optok[3])
        env[name] = n
        nodes.append(n)
    if lx.peek()[0] != "eof":
        raise lx.error("expected end of input after the graph")
    g = Graph(nodes, inputs, outputs)
    if verify:
        try:
            g.lint()
        except IRError as e:
            raise ParseError(str(e), tok[2], tok[3]) from None
    return g
