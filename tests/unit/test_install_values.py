"""install's Helm values: ``--set`` parsing, merging, and the chart's ``boundAPIs``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from connector.install import InstallError, merge_values, parse_set, union_bound_apis
from connector.install.values import bound_apis_value
from functions.binder import BoundResource

from . import assert_same


@dataclass(frozen=True)
class SetCase:
    reason: str
    args: list[str]
    want: dict[str, Any]


@pytest.mark.parametrize(
    "case",
    [
        SetCase("a dotted key nests", ["a.b.c=x"], {"a": {"b": {"c": "x"}}}),
        SetCase(
            "helm's types: bool, int, null; the rest stays a string",
            ["t=true,f=False,n=null,i=42,s=1.5,w=10m"],
            {"t": True, "f": False, "n": None, "i": 42, "s": "1.5", "w": "10m"},
        ),
        SetCase("a later assignment wins", ["a=1", "a=2"], {"a": 2}),
        SetCase("braces make a list", ["l={x,y,3}"], {"l": ["x", "y", 3]}),
        SetCase("an empty list", ["l={}"], {"l": []}),
        SetCase(
            "escaped dots and commas are literal",
            [r"podAnnotations.example\.com/team=a\,b"],
            {"podAnnotations": {"example.com/team": "a,b"}},
        ),
        SetCase("an escaped equals sign is part of the key", [r"a\=b=c"], {"a=b": "c"}),
        SetCase("only the first equals sign splits", ["a=b=c"], {"a": "b=c"}),
        SetCase("an empty value is an empty string", ["a="], {"a": ""}),
        SetCase("assignments merge into one tree", ["a.b=1", "a.c=2"], {"a": {"b": 1, "c": 2}}),
        SetCase("a scalar is replaced by a map below it", ["a=1", "a.b=2"], {"a": {"b": 2}}),
        SetCase("empty items between commas are skipped", ["a=1,,b=2"], {"a": 1, "b": 2}),
    ],
    ids=lambda c: c.reason,
)
def test_parse_set(case: SetCase) -> None:
    assert_same(case.want, parse_set(case.args), case.reason)


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("novalue", "expected key=value"),
        ("a..b=1", "empty part"),
        ("list[0]=x", "list indexes are not supported"),
    ],
)
def test_parse_set_rejects_what_it_cannot_express(arg: str, message: str) -> None:
    with pytest.raises(InstallError, match=message):
        parse_set([arg])


@dataclass(frozen=True)
class MergeCase:
    reason: str
    base: dict[str, Any]
    override: dict[str, Any]
    want: dict[str, Any]


@pytest.mark.parametrize(
    "case",
    [
        MergeCase(
            "maps merge key by key", {"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"x": 1, "y": 2}}
        ),
        MergeCase("the override wins on a leaf", {"a": {"x": 1}}, {"a": {"x": 2}}, {"a": {"x": 2}}),
        MergeCase("lists are replaced, not appended", {"l": [1, 2]}, {"l": [3]}, {"l": [3]}),
        MergeCase("a scalar replaces a map", {"a": {"x": 1}}, {"a": None}, {"a": None}),
        MergeCase("an empty override keeps the base", {"a": 1}, {}, {"a": 1}),
    ],
    ids=lambda c: c.reason,
)
def test_merge_values(case: MergeCase) -> None:
    base = {k: v for k, v in case.base.items()}
    assert_same(case.want, merge_values(case.base, case.override), case.reason)
    assert case.base == base, "the base is not changed"


def resource(group: str, plural: str) -> BoundResource:
    return BoundResource(
        crd_name=f"{plural}.{group}",
        group=group,
        kind=plural.title(),
        plural=plural,
        scope="Namespaced",
        version="v1",
    )


def test_bound_apis_value_is_one_entry_per_group_with_plurals_sorted() -> None:
    got = bound_apis_value(
        [resource("b.org", "zs"), resource("a.org", "xs"), resource("b.org", "ys")]
    )
    assert_same(
        [{"group": "a.org", "resources": ["xs"]}, {"group": "b.org", "resources": ["ys", "zs"]}],
        got,
        "boundAPIs",
    )


def test_union_of_bound_apis_keeps_every_group_and_plural_once() -> None:
    got = union_bound_apis(
        [{"group": "b.org", "resources": ["ys"]}, {"group": "a.org", "resources": ["xs"]}],
        [{"group": "b.org", "resources": ["zs", "ys"]}, "junk", {"resources": ["orphans"]}],
        None,
    )
    assert_same(
        [{"group": "a.org", "resources": ["xs"]}, {"group": "b.org", "resources": ["ys", "zs"]}],
        got,
        "union",
    )
