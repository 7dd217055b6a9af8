"""The pydantic base every resource model shares: camelCase on the wire, strict fields."""

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel

from controller.api.errors import SpecError, explain
from controller.api.expressions import Rule, SetRule, check


def empty_list() -> list[Any]:
    """`default_factory=list` for a model's field, cheaper to declare: pydantic reads each factory's
    signature, and a builtin's is parsed from its text by tokenize, whose patterns took 5 ms to
    compile and each field 0.3 ms more, in every command's start-up."""
    return []


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")
    # This model's part of the rulebook (controller/api/rules.py), checked on the document as given.
    RULES: ClassVar[Sequence[Rule]] = ()
    SETS: ClassVar[Sequence[SetRule]] = ()

    @classmethod
    def parse(cls, data: Any, prefix: str = "") -> Self:
        """Validate, raising SpecError with one line per bad field."""
        where = f"{prefix}." if prefix else ""
        early = [f"{where}{field}: {why}" for field, why in cls.raw_problems(data)]
        try:
            model = cls.model_validate(data)
        except ValidationError as exc:
            # Report every bad field at once; a field the raw check explained is not repeated.
            said = {line.split(": ", 1)[0] for line in early}
            rest = [
                line for line in explain(exc, prefix, cls.map_fields()).problems if line.split(": ", 1)[0] not in said
            ]
            raise SpecError(early + rest) from None
        found = early + [f"{where}{field}: {why}" for field, why in model.problems()]
        if found:
            raise SpecError(found)
        return model

    @classmethod
    def raw_problems(cls, data: Any) -> list[tuple[str, str]]:
        """The rulebook's checks on the document as given, as the API server runs them (CEL)."""
        found = check(data, cls.RULES, cls.SETS)
        if isinstance(data, Mapping):
            for name, info in cls.model_fields.items():
                part = info.annotation
                if isinstance(part, type) and issubclass(part, Model):
                    key = info.alias or name
                    found += [(f"{key}.{field}", why) for field, why in part.raw_problems(data.get(key))]
        return found

    def problems(self) -> list[tuple[str, str]]:
        """Rules that span fields, as (field path, why); none by default."""
        return []

    @classmethod
    def map_fields(cls) -> frozenset[str]:
        """Wire names of the fields that are maps here or in the models inside: their keys are not fields."""
        found: set[str] = set()

        def walk(annotation: Any, name: str) -> None:
            if get_origin(annotation) is dict:
                found.add(name)
            if isinstance(annotation, type) and issubclass(annotation, Model) and annotation is not cls:
                found.update(annotation.map_fields())
            for arg in get_args(annotation):
                walk(arg, name)

        for name, info in cls.model_fields.items():
            walk(info.annotation, info.alias or name)
        return frozenset(found)

    @classmethod
    def wire_fields(cls) -> tuple[str, ...]:
        return tuple(field.alias or name for name, field in cls.model_fields.items())

    @classmethod
    def known(cls, data: Any) -> dict[str, Any]:
        """This model's part of a mapping that others write into too (kopf keeps its own keys in status)."""
        fields = cls.wire_fields()
        return {k: v for k, v in (data or {}).items() if k in fields}

    def dump(self) -> dict[str, Any]:
        """The wire form: camelCase, without unset optional fields."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
