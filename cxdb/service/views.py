"""JSON views of model records: ids as decimal strings, times as ISO 8601. Pure."""

from __future__ import annotations

from typing import Any

from ..model import ContextRecord, TurnRecord, iso_utc

__all__ = ["MAX_LINEAGE_CHILDREN", "context_view", "id_text", "list_cursor", "parse_list_cursor", "turn_head"]

MAX_LINEAGE_CHILDREN = 256
"""A lineage block lists at most this many children, oldest first; ``child_count`` counts them all."""


def id_text(value: int | None) -> str | None:
    return None if value is None else str(value)


def context_view(context: ContextRecord, include_provenance: bool, include_lineage: bool,
                 children: list[int] | None = None, child_count: int = 0) -> dict[str, Any]:
    """A context as the API shows it; ``children`` (the first of ``child_count``) feed the lineage block."""
    view: dict[str, Any] = {
        "context_id": str(context.context_id),
        "head_turn_id": str(context.head_turn_id),
        "head_depth": context.head_depth,
        "created_at": iso_utc(context.created_at_ms),
        "last_activity_at": iso_utc(context.last_activity_ms),
        "client_tag": context.client_tag,
    }
    if include_provenance:
        view["provenance"] = context.provenance
    if include_lineage:
        lineage = context.lineage
        kids = children or []
        view["lineage"] = {
            "parent_context_id": id_text(lineage.parent_context_id),
            "root_context_id": str(lineage.root_context_id),
            "fork_turn_id": id_text(lineage.fork_turn_id),
            "children": [str(child) for child in kids[:MAX_LINEAGE_CHILDREN]],
            "child_count": child_count,
        }
    return view


def list_cursor(context: ContextRecord) -> str:
    """Where a page of the context list ended: its last context's activity and id, ``"<ms>.<id>"``."""
    return f"{context.last_activity_ms}.{context.context_id}"


def parse_list_cursor(text: str) -> tuple[int, int] | None:
    """The (activity, id) a :func:`list_cursor` names; None when it is not one."""
    activity, dot, context_id = text.partition(".")
    if not dot or not (activity.isascii() and activity.isdigit() and context_id.isascii() and context_id.isdigit()):
        return None
    if len(activity) > 20 or len(context_id) > 20 or int(activity) >= 1 << 64 or int(context_id) >= 1 << 64:
        return None
    return int(activity), int(context_id)


def turn_head(turn: TurnRecord) -> dict[str, Any]:
    """The fields every view of a turn starts with."""
    return {
        "turn_id": str(turn.turn_id),
        "parent_turn_id": str(turn.parent_turn_id),
        "depth": turn.depth,
        "declared_type": {"type_id": turn.type_id, "type_version": turn.type_version},
    }
