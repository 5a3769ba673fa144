"""Fuzzing the IR parser with mutated real IR text: every mutation either parses to a
graph that passes the verifier, or raises ParseError. Never another exception, a hang,
or evaluation of anything in the text."""
from hypothesis import HealthCheck, given, settings, strategies as st

from graphc.ir import parse, print_graph
from graphc.ir.errors import ParseError

from test_ir import random_graphs


@st.composite
def mutated_ir(draw):
    text = print_graph(draw(random_graphs(with_locs=True)))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["truncate", "delete", "insert", "replace", "swap"]))
        if not text:
            break
        i = draw(st.integers(0, len(text) - 1))
        if kind == "truncate":
            text = text[:i]
        elif kind == "delete":
            text = text[:i] + text[i + draw(st.integers(1, 8)):]
        elif kind == "insert":
            text = text[:i] + draw(st.text(alphabet='%[]{}(),:=@"\\0123456789.-eafinx_ \n',
                                           min_size=1, max_size=6)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.characters(codec="utf-8")) + text[i + 1:]
        else:
            j = draw(st.integers(0, len(text) - 1))
            a, b = sorted((i, j))
            text = text[:a] + text[b:b + 1] + text[a + 1:b] + text[a:a + 1] + text[b + 1:]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(mutated_ir())
def test_mutated_ir_text_parses_or_raises_parse_error(text):
    try:
        g = parse(text)
    except ParseError:
        return
    g.lint()                      # whatever parses is a valid graph
    assert parse(print_graph(g)) == g


def test_dtype_attribute_that_is_not_a_dtype_is_a_parse_error():
    """Found by the fuzzer: `dtype=32` used to crash while formatting the error."""
    import pytest
    text = 'graph(%w: f32[1,1]) {\n  %1: f32[] = const() {dtype=32, value=0.0}\n  return %w\n}\n'
    with pytest.raises(ParseError, match="attribute dtype must be a dtype, got 32"):
        parse(text)
