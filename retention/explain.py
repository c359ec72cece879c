"""Why one image is deleted, kept, locked or untouched: `acr-retention explain`. Pure.

An explanation is read from a plan: its reasons already name every rule that matched on each
side, what protected or cascaded a manifest, and the in-use sources (policy.md §4: "why was X
kept/deleted?" must be answerable from the plan alone). What a plan's reasons do not spell out,
explain takes from the plan's details (`Kept.ranks`, `Kept.locked`, `DeleteManifest.ranks`, which
plans made with `details` carry) and, when it planned the inventory itself, from the repository as
listed: its tags, its locks and its graph (index parents and children, subjects and referrers).
From a saved plan alone, the graph is what the plan's entries say about each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from retention.errors import RetentionError
from retention.plan import (
    DeleteManifest,
    DeleteTag,
    Kept,
    SetManifestProperties,
    SetTagProperties,
    action_to_json,
    locked_json,
    ranks_json,
)
from retention.planner.graph import build_graph
from retention.planner.ranking import ordinal
from retention.policy import RankBy
from retention.timefmt import format_time

if TYPE_CHECKING:
    from collections.abc import Sequence

    from retention.inventory import Repository
    from retention.plan import Action, Locks, Plan, Rank
    from retention.policy import Rule

EXPLAIN_FORMAT = "acr-retention/explain"
EXPLAIN_FORMAT_VERSION = 1
# An ambiguous digest prefix lists this many candidates, then counts the rest.
CANDIDATES_SHOWN = 10

_DIGEST = r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[0-9a-fA-F]+"
# Reasons that name another manifest: how the graph around one is read from a plan alone.
_PARENT_REASON = re.compile(rf"^(child of|attachment of|cascade from|registry cascade from) ({_DIGEST})$")
_REFERRER_REASON = re.compile(rf"^keeps referrer ({_DIGEST}):")
_VIA_REASON = re.compile(rf"^in-use via ({_DIGEST}):")
# `keep:name`, `keep:name (group 1.4, 2nd of 2)`, `untag:name removes tag first`, `saved-from:name`.
_RULE_REASON = re.compile(r"^(keep|delete|lock|untag|saved-from):([a-z0-9][a-z0-9-]*)(?: (.*))?$")
_PROTECTIONS = (
    "child of ",
    "attachment of ",
    "keeps referrer ",
    "in-use",
    "on a reference cycle",
    "not deleted:",
)


class ExplainError(RetentionError):
    """A reference that cannot be explained: malformed, missing, or ambiguous."""


@dataclass(frozen=True, slots=True)
class Ref:
    text: str
    repository: str
    tag: str | None = None
    digest: str | None = None  # a whole digest or a prefix (with or without `algorithm:`)


def parse_ref(text: str) -> Ref:
    """`repo:tag`, `repo@sha256:<hex>` or `repo@<unique prefix>`. Raises ExplainError."""
    if "@" in text:
        repository, _, digest = text.partition("@")
        if repository and digest and "@" not in digest:
            return Ref(text, repository, digest=digest)
    else:
        repository, _, tag = text.rpartition(":")
        if repository and tag and "/" not in tag:
            return Ref(text, repository, tag=tag)
    raise ExplainError(f"{text}: not a reference: give repository:tag or repository@digest")


@dataclass(frozen=True, slots=True)
class RuleMatch:
    rule: str
    side: str  # keep | delete | lock | untag
    outcome: str  # what it did here, in words


@dataclass(frozen=True, slots=True)
class Edge:
    relation: str  # index parent, child, subject, referrer, attachment, parent, dependent
    digest: str
    decision: str  # of that manifest in the plan: deleted, kept, untouched


@dataclass(frozen=True, slots=True)
class RankLine:
    rank: Rank
    text: str  # "4th newest of 12 images that keep-recent selects; newest: 5: it keeps it"


@dataclass(frozen=True, slots=True)
class Explanation:
    ref: str
    repository: str
    digest: str
    tags: tuple[str, ...]
    decision: str  # deleted | kept | untouched
    reasons: tuple[str, ...]
    rules: tuple[RuleMatch, ...]
    ranks: tuple[RankLine, ...]
    locks: Locks | None  # None: the plan does not say
    graph: tuple[Edge, ...]
    graph_complete: bool  # from the inventory (True) or only what the plan's entries say (False)
    cascade: tuple[str, ...]  # why it goes with another manifest
    protected_by: tuple[str, ...]  # what kept it beyond the rules
    changes: tuple[Action, ...]  # property changes and untags planned for it and its tags


@dataclass(frozen=True, slots=True)
class _Entries:
    """One plan, indexed by manifest."""

    manifests: dict[tuple[str, str], DeleteManifest | Kept]
    changes: dict[tuple[str, str], list[Action]]

    @classmethod
    def of(cls, plan: Plan) -> _Entries:
        manifests: dict[tuple[str, str], DeleteManifest | Kept] = {}
        for item in (*plan.kept, *plan.untouched):
            manifests[item.repository, item.digest] = item
        changes: dict[tuple[str, str], list[Action]] = {}
        for action in plan.actions:
            if isinstance(action, DeleteManifest):
                manifests[action.repository, action.digest] = action
            else:
                changes.setdefault((action.repository, action.digest), []).append(action)
        return cls(manifests, changes)

    def decision(self, repository: str, digest: str) -> str:
        entry = self.manifests.get((repository, digest))
        if isinstance(entry, DeleteManifest):
            return "deleted"
        if entry is not None and entry.reasons:
            return "kept"
        return "untouched"

    def known_tags(self, repository: str) -> dict[str, str]:
        """tag -> digest, as far as the plan names tags."""
        found: dict[str, str] = {}
        for (name, digest), entry in self.manifests.items():
            if name == repository:
                found.update(dict.fromkeys(entry.tags, digest))
        for (name, digest), actions in self.changes.items():
            if name == repository:
                for action in actions:
                    if isinstance(action, DeleteTag | SetTagProperties):
                        found[action.tag] = digest
                    elif isinstance(action, SetManifestProperties):
                        found.update(dict.fromkeys(action.tags, digest))
        return found

    def digests(self, repository: str) -> list[str]:
        return sorted({d for (name, d) in (*self.manifests, *self.changes) if name == repository})


def explain(
    plan: Plan,
    refs: Sequence[Ref],
    *,
    inventory: dict[str, Repository] | None = None,
    rules: dict[str, Rule] | None = None,
) -> tuple[list[Explanation], list[str]]:
    """An explanation for each reference that names a manifest, and one line for each that does not.

    `inventory`: the repositories the plan was made from (explain planned them itself), else the
    plan is all there is (a saved plan). `rules`: the policy's rules by name, for `newest` limits.
    """
    entries = _Entries.of(plan)
    found: list[Explanation] = []
    problems: list[str] = []
    for ref in refs:
        try:
            digest, tags = _resolve(ref, plan, entries, inventory)
        except ExplainError as exc:
            problems.append(str(exc))
            continue
        repository = inventory.get(ref.repository) if inventory is not None else None
        found.append(_explain_one(ref, digest, tags, entries, repository=repository, rules=rules or {}))
    return found, problems


def _resolve(
    ref: Ref, plan: Plan, entries: _Entries, inventory: dict[str, Repository] | None
) -> tuple[str, tuple[str, ...]]:
    """The digest a reference names and that manifest's tags. Raises ExplainError."""
    name = ref.repository
    if inventory is not None:
        repository = inventory.get(name)
        if repository is None:
            raise ExplainError(f"{ref.text}: repository {name} is not in the inventory")
        tag_map = {t.name: m.digest for m in repository.manifests for t in m.tags}
        digests = sorted(m.digest for m in repository.manifests)
        tags_of = {m.digest: m.tag_names for m in repository.manifests}
        missing = ""
    else:
        if all(s.name != name for s in plan.repositories):
            raise ExplainError(
                f"{ref.text}: repository {name} is not in the inventory the plan was made from"
            )
        tag_map = entries.known_tags(name)
        digests = entries.digests(name)
        tags_of = {}
        for digest in digests:
            entry = entries.manifests.get((name, digest))
            tags_of[digest] = entry.tags if entry is not None else ()
        # Untouched manifests are not in a saved plan: an unknown one may exist all the same.
        missing = (
            ": the plan neither deletes, keeps nor changes it, and a saved plan does not list"
            " untouched manifests (--policy with --snapshot or --registry tells untouched from missing)"
        )
    if ref.tag is not None:
        tagged = tag_map.get(ref.tag)
        if tagged is None:
            raise ExplainError(f"{ref.text}: no tag {ref.tag} in {name}{missing}")
        return tagged, tags_of.get(tagged, ())
    wanted = ref.digest or ""
    if wanted in tags_of:
        return wanted, tags_of[wanted]
    matches = [d for d in digests if (d if ":" in wanted else d.partition(":")[2]).startswith(wanted)]
    if not matches:
        raise ExplainError(f"{ref.text}: no manifest {wanted} in {name}{missing}")
    if len(matches) > 1:
        shown = ", ".join(matches[:CANDIDATES_SHOWN])
        more = f" and {len(matches) - CANDIDATES_SHOWN} more" if len(matches) > CANDIDATES_SHOWN else ""
        raise ExplainError(f"{ref.text}: ambiguous: {len(matches)} manifests in {name} match: {shown}{more}")
    return matches[0], tags_of.get(matches[0], ())


def _explain_one(
    ref: Ref,
    digest: str,
    tags: tuple[str, ...],
    entries: _Entries,
    *,
    repository: Repository | None,
    rules: dict[str, Rule],
) -> Explanation:
    name = ref.repository
    entry = entries.manifests.get((name, digest))
    reasons = entry.reasons if entry is not None else ()
    decision = entries.decision(name, digest)
    changes = tuple(entries.changes.get((name, digest), ()))
    ranks = entry.ranks if entry is not None else ()
    if repository is not None:
        manifest = next(m for m in repository.manifests if m.digest == digest)
        locks: Locks | None = manifest.blocking_locks
        graph = _graph_from_inventory(repository, digest, entries)
    else:
        recorded = entry.locked if isinstance(entry, DeleteManifest | Kept) else ()
        # A plan made with details names the locks of what it keeps; an older one only says "locked".
        locks = None if not recorded and "locked" in reasons else recorded
        graph = _graph_from_plan(name, digest, entry, entries)
    return Explanation(
        ref=ref.text,
        repository=name,
        digest=digest,
        tags=tags,
        decision=decision,
        reasons=reasons,
        rules=_rules(reasons, changes, decision),
        ranks=tuple(RankLine(r, rank_text(r, rules.get(r.rule))) for r in ranks),
        locks=locks,
        graph=graph,
        graph_complete=repository is not None,
        cascade=tuple(r for r in reasons if "cascade from " in r and not r.startswith("saved-from:")),
        protected_by=tuple(r for r in reasons if r.startswith(_PROTECTIONS) or r == "locked"),
        changes=changes,
    )


def _rules(reasons: Sequence[str], changes: Sequence[Action], decision: str) -> tuple[RuleMatch, ...]:
    """Every rule the reasons name, with its side and what it did to this manifest."""
    found: dict[tuple[str, str], RuleMatch] = {}
    for reason in (*reasons, *(r for action in changes for r in action.reasons)):
        match = _RULE_REASON.match(reason)
        if match is None:
            continue
        kind, rule, rest = match.groups()
        if kind == "keep":
            outcome = "keeps it" + (f" ({rest.strip('()')})" if rest else "")
        elif kind == "delete":
            outcome = "deletes it" if decision == "deleted" else "matched"
        elif kind == "saved-from":
            kind, outcome = "delete", "matched, but something kept it (see the other reasons)"
        elif kind == "lock":
            outcome = _lock_outcome(rule, reasons, changes)
        else:
            outcome = rest or "removes tags of it"
        found.setdefault((rule, kind), RuleMatch(rule, kind, outcome))
    return tuple(found.values())


def _lock_outcome(rule: str, reasons: Sequence[str], changes: Sequence[Action]) -> str:
    parts = []
    if f"lock:{rule}" in reasons:
        parts.append("keeps it (it blocks delete or write)")
    for action in changes:
        if f"lock:{rule}" in action.reasons and isinstance(action, SetManifestProperties | SetTagProperties):
            where = "manifest" if isinstance(action, SetManifestProperties) else f"tag {action.tag}"
            parts.append(f"sets {where} {_set_text(action.set)}")
    return "; ".join(parts) or "matched (nothing to change)"


def _set_text(changes: Sequence[tuple[Any, bool]]) -> str:
    return " ".join(f"{prop}={str(value).lower()}" for prop, value in changes)


def rank_text(rank: Rank, rule: Rule | None) -> str:
    """ "4th newest of 12 images that keep-recent selects; newest: 5: it keeps it"."""
    order = "highest version" if rule is not None and rule.rank_by is RankBy.VERSION else "newest"
    if rank.group is None:
        text = f"{ordinal(rank.rank)} {order} of {rank.of} images that {rank.rule} selects"
    else:
        text = (
            f"{ordinal(rank.rank)} {order} of {rank.of} images in group {rank.group}"
            f" ({ordinal(rank.group_rank or 0)} of {rank.groups} groups) that {rank.rule} selects"
        )
    text += f"; newest: {rank.newest}"
    if rank.groups_kept is not None:
        text += f", groups: {rank.groups_kept}"
    return text + (": it keeps it" if rank.selected else ": not among them")


def _graph_from_inventory(repository: Repository, digest: str, entries: _Entries) -> tuple[Edge, ...]:
    nodes = build_graph(repository.manifests)
    node = nodes[digest]
    name = repository.name
    edges: list[tuple[str, str]] = [("index parent", d) for d in node.index_parents]
    edges += [("child", d) for d in node.children]
    edges += [("subject", d) for d in node.subjects]
    attachments = [d for d in node.dependents if digest in nodes[d].subjects]
    edges += [("referrer", d) for d in node.referrers]
    edges += [("attachment", d) for d in attachments if d not in node.referrers]
    return tuple(Edge(relation, d, entries.decision(name, d)) for relation, d in edges)


def _graph_from_plan(
    name: str, digest: str, entry: DeleteManifest | Kept | None, entries: _Entries
) -> tuple[Edge, ...]:
    """The neighbours a plan names: parents in this manifest's entry, dependents in theirs."""
    edges: dict[tuple[str, str], None] = {}
    own = entry.reasons if entry is not None else ()
    for reason in own:
        match = _PARENT_REASON.match(reason)
        if match is not None:
            edges[_RELATION_UP[match.group(1)], match.group(2)] = None
        for pattern, relation in ((_REFERRER_REASON, "referrer"), (_VIA_REASON, "dependent")):
            found = pattern.match(reason)
            if found is not None:
                edges[relation, found.group(1)] = None
    if isinstance(entry, DeleteManifest):
        if entry.subject is not None:
            edges["subject", entry.subject] = None
        for parent in entry.after:
            if not any(d == parent for _, d in edges):
                edges["parent", parent] = None
    for (repository, other), item in entries.manifests.items():
        if repository != name or other == digest:
            continue
        for reason in item.reasons:
            match = _PARENT_REASON.match(reason)
            if match is not None and match.group(2) == digest:
                edges[_RELATION_DOWN[match.group(1)], other] = None
        if (
            isinstance(item, DeleteManifest)
            and digest in item.after
            and not any(d == other for _, d in edges)
        ):
            edges["dependent", other] = None
    return tuple(Edge(relation, d, entries.decision(name, d)) for relation, d in edges)


_RELATION_UP = {
    "child of": "index parent",
    "attachment of": "subject",
    "cascade from": "parent",
    "registry cascade from": "subject",
}
_RELATION_DOWN = {
    "child of": "child",
    "attachment of": "attachment",
    "cascade from": "dependent",
    "registry cascade from": "referrer",
}


# --- renderings --------------------------------------------------------------------------------


def explanations_to_json(plan: Plan, found: Sequence[Explanation], *, source: str) -> dict[str, Any]:
    return {
        "format": EXPLAIN_FORMAT,
        "format_version": EXPLAIN_FORMAT_VERSION,
        "registry": plan.registry,
        "now": format_time(plan.now),
        "policy_sha256": plan.policy_sha256,
        "source": source,
        "explanations": [explanation_to_json(e) for e in found],
    }


def explanation_to_json(item: Explanation) -> dict[str, Any]:
    return {
        "ref": item.ref,
        "repository": item.repository,
        "digest": item.digest,
        "tags": list(item.tags),
        "decision": item.decision,
        "reasons": list(item.reasons),
        "rules": [{"rule": r.rule, "side": r.side, "outcome": r.outcome} for r in item.rules],
        "ranks": [
            {**doc, "text": line.text}
            for doc, line in zip(ranks_json(tuple(r.rank for r in item.ranks)), item.ranks, strict=True)
        ],
        "locked": locked_json(item.locks) if item.locks is not None else None,
        "graph": [{"relation": e.relation, "digest": e.digest, "decision": e.decision} for e in item.graph],
        "graph_complete": item.graph_complete,
        "cascade": list(item.cascade),
        "protected_by": list(item.protected_by),
        "changes": [action_to_json(a) for a in item.changes],
    }


def render_explanations(plan: Plan, found: Sequence[Explanation], *, source: str) -> str:
    """The terminal form: one block per reference."""
    where = f"{source} {plan.registry}" if plan.registry else source
    header = f"Explained from the {where}, now {format_time(plan.now)}, policy {plan.policy_sha256[:12]}"
    blocks = [header]
    blocks += [_text_block(item) for item in found]
    return "\n\n".join(blocks) + "\n"


def _text_block(item: Explanation) -> str:
    tags = f" [{', '.join(item.tags)}]" if item.tags else ""
    lines = [f"{_visible(item.ref)}: {item.repository}@{item.digest}{_visible(tags)}"]
    verdict = item.decision
    if item.cascade:
        verdict += f" ({'; '.join(item.cascade)})"
    lines.append(f"  decision:  {_visible(verdict)}")
    lines.append(
        f"  reasons:   {_visible(', '.join(item.reasons)) if item.reasons else '(none: no rule acts on it)'}"
    )
    rule_lines = [f"{r.side} {r.rule}: {r.outcome}" for r in item.rules]
    rule_lines += [line.text for line in item.ranks]
    _section(lines, "rules", rule_lines or ["none matched"])
    if item.protected_by:
        _section(lines, "protected", list(item.protected_by))
    _section(lines, "locks", _lock_lines(item.locks, complete=item.graph_complete))
    graph = [f"{e.relation} {e.digest} ({e.decision})" for e in item.graph]
    if not item.graph_complete:
        graph.append("(as far as the plan's entries say)")
    _section(
        lines,
        "graph",
        graph if item.graph else ["none" + ("" if item.graph_complete else " that the plan names")],
    )
    changes = [_change_text(a) for a in item.changes]
    _section(lines, "changes", changes or ["none"])
    return "\n".join(lines)


def _section(lines: list[str], title: str, items: Sequence[str]) -> None:
    label = f"  {title}:".ljust(13)
    for index, text in enumerate(items):
        lines.append((label if index == 0 else " " * 13) + _visible(text))


def _lock_lines(locks: Locks | None, *, complete: bool) -> list[str]:
    if locks is None:
        return ["locked (the plan does not say by what; plan the inventory to see)"]
    if not locks:
        return ["none" if complete else "none that the plan records"]
    manifest = [str(p) for tag, p in locks if tag is None]
    lines = [f"manifest: {', '.join(p + '=false' for p in manifest)}"] if manifest else []
    tags: dict[str, list[str]] = {}
    for tag, prop in locks:
        if tag is not None:
            tags.setdefault(tag, []).append(f"{prop}=false")
    lines += [f"tag {tag}: {', '.join(props)}" for tag, props in tags.items()]
    return lines


def _change_text(action: Action) -> str:
    why = ", ".join(action.reasons)
    if isinstance(action, DeleteTag):
        unlock = ", unlock first" if action.unlock_first else ""
        return f"- tag {action.tag} removed{unlock} ({why})"
    if isinstance(action, SetTagProperties):
        return f"~ tag {action.tag}: {_set_text(action.set)} ({why})"
    if isinstance(action, SetManifestProperties):
        return f"~ manifest: {_set_text(action.set)} ({why})"
    return f"- deleted ({why})"  # pragma: no cover - deletes are the decision, not a change


def _visible(text: str) -> str:
    """Control characters from inventory data as escapes, so they cannot drive a terminal."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
