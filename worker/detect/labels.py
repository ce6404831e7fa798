"""Label maps: `coco_labels.txt` (index and name per line) and the TF Object Detection API's
`label_map.pbtxt` (item { id: 1 name: '...' display_name: '...' })."""

from __future__ import annotations

import re
from pathlib import Path

from common.errors import FramecastError


class LabelMapError(FramecastError):
    """A label map file is missing or unreadable."""


# Protobuf text format, as far as label maps use it: `key: value` fields and `key { ... }` blocks.
_TOKEN = re.compile(r"""\s*(?:(?P<open>\{)|(?P<close>\})|(?P<key>\w+)\s*:?\s*(?=\{)|"""
                    r"""(?P<field>\w+)\s*:\s*(?:"(?P<dq>(?:[^"\\]|\\.)*)"|'(?P<sq>(?:[^'\\]|\\.)*)'|"""
                    r"""(?P<bare>[^\s{},;]+)))\s*[,;]?""")


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


def _items(text: str) -> list[dict[str, str]]:
    """The top-level `item { ... }` blocks' own fields (fields of nested blocks such as keypoints are
    skipped, so a keypoint's `id` never replaces its item's)."""
    text = re.sub(r"#[^\n]*", "", text)
    items: list[dict[str, str]] = []
    stack: list[str] = []
    pending_block: str | None = None
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip():
                raise LabelMapError(f"cannot parse the label map near {text[pos:pos + 30].strip()!r}")
            break
        pos = match.end()
        if match.group("key"):
            pending_block = match.group("key")
        elif match.group("open"):
            stack.append(pending_block or "")
            pending_block = None
            if stack == ["item"]:
                items.append({})
        elif match.group("close"):
            if not stack:
                raise LabelMapError("unbalanced '}' in the label map")
            stack.pop()
        elif stack == ["item"]:
            value = next(v for v in match.group("dq", "sq", "bare") if v is not None)
            items[-1][match.group("field")] = value
    if stack:
        raise LabelMapError("unclosed '{' in the label map")
    return items


def parse_label_map_pbtxt(text: str) -> dict[int, str]:
    """The TF OD API label map; `display_name` is preferred over `name` when both are given."""
    labels: dict[int, str] = {}
    for fields in _items(text):
        if not fields.get("id", "").lstrip("-").isdigit():
            raise LabelMapError("label map item without an integer id")
        labels[int(fields["id"])] = fields.get("display_name") or fields.get("name") or fields["id"]
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
    if path.suffix == ".pbtxt" or re.search(r"^\s*item\s*:?\s*\{", text, re.M):
        try:
            return parse_label_map_pbtxt(text)
        except LabelMapError as exc:
            raise LabelMapError(f"{path}: {exc}") from None
    labels = parse_coco_labels(text)
    if not labels:
        raise LabelMapError(f"{path}: empty label map")
    return labels
