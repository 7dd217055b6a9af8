from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.api import DomainMigration, MigrationFlag, SpecError, load_migration


def doc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"domain": "web", "source": "a", "destination": "b"}
    base.update(spec)
    return {"apiVersion": "domig.dev/v1alpha1", "kind": "DomainMigration", "metadata": {"name": "m"}, "spec": base}


def problems(**spec: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_migration(doc(**spec))
    return info.value.problems


def test_a_plain_document_parses_with_defaults() -> None:
    m = load_migration(doc(flags=["live"], params={"bandwidth": 100, "compression": "xbzrle,zstd"}))
    assert m.spec.flags == [MigrationFlag.live]
    assert m.spec.params == {"bandwidth": 100, "compression": "xbzrle,zstd"}
    assert m.status.phase == "Pending"
    assert m.spec.target_name == "web"


def test_unknown_flag_names_the_field_and_lists_the_known_ones() -> None:
    [line] = problems(flags=["live", "fast"])
    assert line.startswith("spec.flags[1]: fast is not one of: live, persistDest")


def test_negative_bandwidth_names_the_parameter() -> None:
    assert problems(params={"bandwidth": -1}) == ["spec.params[bandwidth]: must be at least 0, got -1"]


@pytest.mark.parametrize("value", ["100", True, 1.5])
def test_a_parameter_of_the_wrong_type_is_refused(value: object) -> None:
    [line] = problems(params={"bandwidth": value})
    assert line.startswith("spec.params[bandwidth]:")


def test_unknown_compression_method() -> None:
    assert problems(params={"compression": "lz4"}) == [
        "spec.params[compression]: must be one of xbzrle, mt, zlib, zstd (or a comma-separated list of them), got 'lz4'"
    ]


def test_rename_and_uri_are_spec_fields_not_params() -> None:
    assert problems(params={"destination_name": "x"}) == [
        "spec.params[destination_name]: is set through spec.dname, not as a parameter"
    ]


def test_a_driver_prefixed_unknown_parameter_is_left_to_the_driver() -> None:
    m = load_migration(doc(params={"xen.port": 8002, "vendor.knob": "x"}))
    assert m.spec.params["vendor.knob"] == "x"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["offline", "live", "persistDest"], "offline and live cannot be combined"),
        (["nonSharedDisk", "nonSharedInc"], "nonSharedDisk and nonSharedInc cannot be combined"),
        (["offline"], "offline needs persistDest"),
        (["live", "live"], "duplicate value 'live'"),
    ],
)
def test_flag_conflicts(flags: list[str], expected: str) -> None:
    [line] = problems(flags=flags)
    assert line.startswith("spec.flags") and expected in line


def test_same_host_needs_a_rename() -> None:
    assert problems(destination="a") == ["spec.destination: is the source host: set dname to migrate to the same host"]
    assert load_migration(doc(destination="a", dname="web2")).spec.renames


def test_missing_and_unknown_fields() -> None:
    with pytest.raises(SpecError) as info:
        load_migration({"metadata": {"name": "m"}, "spec": {"domain": "web", "colour": "red"}})
    assert info.value.problems == [
        "spec.source: is required",
        "spec.colour: is not a known field",
    ]


def test_destination_may_be_left_to_the_operator() -> None:
    document = doc(destinationSelector={"rack": "r2"})
    del document["spec"]["destination"]
    spec = load_migration(document).spec
    assert spec.destination is None and spec.destination_selector == {"rack": "r2"}
    [line] = problems(destinationSelector={"rack": "r2"})
    assert line.startswith("spec.destinationSelector: narrows the operator's choice")


def test_wrong_kind_and_timeouts() -> None:
    data = doc(timeouts={"completionPerGiB": 0})
    data["kind"] = "Pod"
    with pytest.raises(SpecError) as info:
        load_migration(data)
    assert "kind: must be 'DomainMigration', got 'Pod'" in info.value.problems
    assert any(p.startswith("spec.timeouts.completionPerGiB:") for p in info.value.problems)


names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)


@given(
    domain=names,
    flags=st.lists(st.sampled_from([f for f in MigrationFlag if f is not MigrationFlag.offline]), unique=True),
    bandwidth=st.integers(min_value=0, max_value=10**6),
    downtime=st.integers(min_value=1, max_value=10**5),
)
def test_valid_documents_round_trip(domain: str, flags: list[MigrationFlag], bandwidth: int, downtime: int) -> None:
    if MigrationFlag.nonSharedDisk in flags and MigrationFlag.nonSharedInc in flags:
        flags.remove(MigrationFlag.nonSharedInc)
    m = load_migration(
        doc(domain=domain, flags=[f.value for f in flags], params={"bandwidth": bandwidth, "downtime": downtime})
    )
    again = DomainMigration.parse(m.dump())
    assert again == m
