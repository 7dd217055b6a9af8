"""The rulebook: every rule about a spec beyond one field's own type, range, length or pattern.

Each rule is written once, here. The model checks it (`Model.parse`), the CRD carries it as a
CEL rule (`controller.api.crds`), and the admission webhook answers with the model's words; a
test walks this book and sends a document breaking each rule to all three. A single field's
constraints (pattern, range, length, enum) are the pydantic fields' own, from which the CRD's
OpenAPI schema is generated; `tests/api/test_rulebook.py` walks those too. The rules about one
driver (its host fields on another driver's host, its own parameters) are derived here from its
declaration (controller/api/drivers.py), so a new driver brings its rules with it.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.api.drivers import DriverDeclaration, declarations, known_params
from controller.api.enums import MigrationFlag
from controller.api.expressions import Expr, F, KeysMatch, Rule, SetRule
from controller.api.params import NAME_PATTERN, SPEC_FIELD_FOR, ParamType

# Pairs libvirt refuses together, with its reason.
CONFLICTS: list[tuple[MigrationFlag, MigrationFlag, str]] = [
    (MigrationFlag.offline, MigrationFlag.live, "an offline migration moves no running state"),
    (MigrationFlag.offline, MigrationFlag.postCopy, "post-copy needs a running domain"),
    (MigrationFlag.offline, MigrationFlag.autoConverge, "auto-converge throttles a running domain"),
    (MigrationFlag.nonSharedDisk, MigrationFlag.nonSharedInc, "choose a full or an incremental disk copy"),
]


def _flag(flag: MigrationFlag) -> Expr:
    return F("flags").present() & F("flags").contains(flag.value)


def _flag_rules() -> list[Rule]:
    rules = []
    for a, b, why in CONFLICTS:
        flags = [a.value, b.value] + ([MigrationFlag.persistDest.value] if MigrationFlag.offline in (a, b) else [])
        rules.append(
            Rule(
                ("flags",),
                ~(_flag(a) & _flag(b)),
                f"{a.value} and {b.value} cannot be combined: {why}",
                {"flags": flags},
            )
        )
    rules.append(
        Rule(
            ("flags",),
            _flag(MigrationFlag.offline).implies(_flag(MigrationFlag.persistDest)),
            "offline needs persistDest: an offline migration only moves the definition",
            {"flags": [MigrationFlag.offline.value]},
        )
    )
    return rules


def _wrong(kind: ParamType) -> int | str:
    return "fast" if kind.kind is int else 7


def _param_rules(name: str, kind: ParamType) -> list[Rule]:
    value = F("params", key=name)
    given = value.present()

    def rule(must: Expr, message: str, bad: int | str) -> Rule:
        return Rule(("params",), given.implies(must), message, {"params": {name: bad}}, value, key=name)

    unit = f" ({kind.unit})" if kind.unit else ""
    if kind.kind is int:
        rules = [rule(value.is_int(), f"must be an integer{unit}", _wrong(kind))]
        if kind.minimum is not None:
            rules.append(
                rule(~value.is_int() | value.ge(kind.minimum), f"must be at least {kind.minimum}", kind.minimum - 1)
            )
        if kind.maximum is not None:
            rules.append(
                rule(~value.is_int() | value.le(kind.maximum), f"must be at most {kind.maximum}", kind.maximum + 1)
            )
        return rules
    rules = [rule(value.is_string(), "must be a string", _wrong(kind))]
    if kind.choices is not None:
        one = "(" + "|".join(kind.choices) + ")"
        choices = f"must be one of {', '.join(kind.choices)} (or a comma-separated list of them)"
        rules.append(rule(~value.is_string() | value.matches(f"^{one}(,{one})*$"), choices, "gzip"))
    return rules


def _params_rules(known: Mapping[str, ParamType]) -> list[Rule]:
    names = KeysMatch(F("params"), NAME_PATTERN.pattern)
    rules = [
        Rule(
            ("params",),
            ~F("params").present() | names,
            "parameter names are libvirt's typed-parameter names: lower-case words separated by dots",
            {"params": {"Not A Name": 1}},
            names,
        )
    ]
    for name, field in SPEC_FIELD_FOR.items():
        rules.append(
            Rule(
                ("params",),
                ~F("params", key=name).present(),
                f"is set through spec.{field}, not as a parameter",
                {"params": {name: "x"}},
                key=name,
            )
        )
    for name, kind in known.items():
        rules.extend(_param_rules(name, kind))
    return rules


def migration_rules(drivers: Mapping[str, DriverDeclaration]) -> list[Rule]:
    return [
        *_flag_rules(),
        Rule(
            ("destination",),
            ~F("destination").present()
            | F("source").ne(F("destination"))
            | (F("dname").present() & F("dname").ne(F("domain"))),
            "is the source host: set dname to migrate to the same host",
            {"destination": "host-a"},
        ),
        Rule(
            ("destinationSelector",),
            ~(F("destination").present() & F("destinationSelector").present()),
            "narrows the operator's choice of a destination: leave it out when spec.destination names one",
            {"destination": "host-b", "destinationSelector": {"rack": "r2"}},
        ),
        *_params_rules(known_params(drivers)),
    ]


def _driver_only(driver: DriverDeclaration, drivers: Mapping[str, DriverDeclaration]) -> list[Rule]:
    """A driver's host fields, refused on another driver's host (at their default they say nothing)."""
    # The breaking document makes a host of another driver, with that driver's URI: the valid
    # document it is merged over is a host of the table's first driver.
    other = next((d for d in drivers.values() if d.name != driver.name), None)
    if other is None:
        return []  # a driver alone in the table has no other driver's hosts to refuse
    rules = []
    for option in driver.host_options:
        unset = ~F(option.wire).present()
        if option.default is not None:
            unset = unset | F(option.wire).eq(option.default)
        rules.append(
            Rule(
                (option.wire,),
                unset | F("driver").eq(driver.name),
                f"is only for the {driver.name} driver",
                {"driver": other.name, "uri": other.uri_example, option.wire: option.example},
                F("driver"),
            )
        )
    return rules


def host_rules(drivers: Mapping[str, DriverDeclaration]) -> list[Rule]:
    return [
        Rule(
            ("uri",),
            ~F("uri").matches("^[^/]*//[^/@]*:[^/@]*@"),
            "must not carry a password: put credentials in a Secret named by credentialsSecretRef",
            {"uri": "qemu+tcp://admin:hunter2@host-a/system"},
        ),
        *(rule for driver in drivers.values() for rule in _driver_only(driver, drivers)),
    ]


MIGRATION_SPEC: list[Rule] = migration_rules(declarations())
MIGRATION_SPEC_SETS: list[SetRule] = [SetRule(("flags",), {"flags": ["live", "live"]})]
HOST_SPEC: list[Rule] = host_rules(declarations())
