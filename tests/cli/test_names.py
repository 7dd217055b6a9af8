"""Object names made from libvirt domain names: valid for Kubernetes whatever the domain is called."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.cli.names import PREFIX_MAX, generate_name, name_problem

# What the API server requires of a custom resource's name, and of a DNS-1123 label (Services & co.).
SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
SUFFIX = "bcdfghjklmnpqrstvwxz2456789"  # the API server's generateName alphabet


def generated(prefix: str, suffix: str = "x7k2q") -> str:
    return prefix + suffix


@given(st.text(), st.text(), st.text(alphabet=SUFFIX, min_size=5, max_size=5))
def test_any_domain_and_host_give_a_valid_name(domain: str, destination: str, suffix: str) -> None:
    prefix = generate_name(domain, destination)
    assert len(prefix) <= PREFIX_MAX
    name = generated(prefix, suffix)
    assert SUBDOMAIN.fullmatch(name) and len(name) <= 253, name
    assert LABEL.fullmatch(name) and len(name) <= 63, name
    assert name_problem(name) is None


@pytest.mark.parametrize(
    ("domain", "prefix"),
    [
        ("Web_DB.1", "web-db-1-to-host-b-"),
        ("web_1", "web-1-to-host-b-"),
        ("web", "web-to-host-b-"),
        ("--Web..DB__", "web-db-to-host-b-"),
        ("Crème brûlée", "creme-brulee-to-host-b-"),
        ("Straße", "strasse-to-host-b-"),
    ],
)
def test_readable_names(domain: str, prefix: str) -> None:
    assert generate_name(domain, "host-b") == prefix


def test_a_long_domain_is_cut_and_hashed_so_two_do_not_collide() -> None:
    first, second = "a" * 299 + "1", "a" * 299 + "2"
    assert len(generate_name(first, "b")) == PREFIX_MAX
    assert generate_name(first, "b").startswith("a" * 40)
    assert generate_name(first, "b") != generate_name(second, "b")
    assert generate_name(first, "b") == generate_name(first, "b")  # the same every time


@pytest.mark.parametrize("domain", ["___", "...", "日本語", "🙂", " ", "-"])
def test_a_domain_with_no_valid_character_still_names_the_object(domain: str) -> None:
    prefix = generate_name(domain, "host-b")
    assert prefix.startswith("domain-to-host-b-") and len(prefix) == len("domain-to-host-b-") + 9
    assert generate_name("___", "host-b") != generate_name("日本語", "host-b")


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("Web_DB", "not a lowercase RFC 1123 subdomain"),
        ("web-", "not a lowercase RFC 1123 subdomain"),
        ("", "not a lowercase RFC 1123 subdomain"),
        ("a" * 254, "no more than 253 characters"),
    ],
)
def test_name_problems(name: str, why: str) -> None:
    problem = name_problem(name)
    assert problem is not None and why in problem


@pytest.mark.parametrize("name", ["web", "web.db-1", "a" * 253])
def test_valid_names_have_no_problem(name: str) -> None:
    assert name_problem(name) is None
