"""Label maps: `coco_labels.txt` (index and name per line) and the TF Object Detection API's
`label_map.pbtxt` (item { id: 1 name: '...' display_name: '...' })."""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import FramecastError


class LabelMapError(FramecastError):
    """A label map file is missing or unreadable."""


_ITEM = re.compile(r"item\s*\{(?P<body>[^}]*)\}", re.S)
_FIELD = re.compile(r"""(?P<key>id|name|display_name)\s*:\s*(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<num>-?\d+))""")


def parse_coco_labels(text: str) -> dict[int, str]:
    """`0  person` per line (or a bare name, whose index is its line number among non-blank lines)."""
    labels: dict[int, str] = {}
    for position, line in enumerate(line for line in text.splitlines() if line.strip()):
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and parts[0].isdigit():
            labels[int(parts[0])] = parts[1].strip()
        else:
            labels[position] = line.strip()
    return labels


def parse_label_map_pbtxt(text: str) -> dict[int, str]:
    """The TF OD API label map; `display_name` is preferred over `name` when both are given."""
    text = re.sub(r"#[^\n]*", "", text)
    labels: dict[int, str] = {}
    for item in _ITEM.finditer(text):
        fields: dict[str, str] = {}
        for match in _FIELD.finditer(item.group("body")):
            value = next(v for v in (match.group("dq"), match.group("sq"), match.group("num")) if v is not None)
            fields[match.group("key")] = value
        if "id" not in fields:
            raise LabelMapError("label map item without an id")
        labels[int(fields["id"])] = fields.get("display_name") or fields.get("name") or str(fields["id"])
    if not labels:
        raise LabelMapError("no `item { id: ... name: ... }` entries found")
    return labels


def load_labels(path: str | Path) -> dict[int, str]:
    """A label map from either format, chosen by the file's content."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LabelMapError(f"cannot read label map {path}: {exc.strerror}") from None
    if path.suffix == ".pbtxt" or re.search(r"^\s*item\s*\{", text, re.M):
        try:
            return parse_label_map_pbtxt(text)
        except LabelMapError as exc:
            raise LabelMapError(f"{path}: {exc}") from None
    labels = parse_coco_labels(text)
    if not labels:
        raise LabelMapError(f"{path}: empty label map")
    return labels
