"""YAML documents: where they come from (files, texts, dicts), and the fixtures folder with kopf's CRDs."""

import os
import pathlib
from collections.abc import Mapping
from typing import Any, TypeAlias

import yaml

from .typedefs import Body

CrdSource: TypeAlias = str | os.PathLike[str] | Mapping[str, Any]

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures"
PEERING_CRDS = FIXTURES / "peering.yaml"


def _load_docs(source: CrdSource) -> list[Body]:
    if isinstance(source, Mapping):
        return [dict(source)]
    text = str(source)
    if isinstance(source, os.PathLike) or ("\n" not in text and pathlib.Path(text).exists()):
        text = pathlib.Path(source).read_text()
    return [doc for doc in yaml.safe_load_all(text) if doc]
