"""What the live inventory must fetch beyond the manifest listing, decided from the policy.

Pure. Listing a repository costs one request per page, and so do its tag
attributes; a manifest's content costs one request per manifest. A
repository no rule selects is not even listed, and tag attributes are read
only where a delete or lock rule selects the repository. These answers are
conservative: when in doubt, fetch.

Content is the exception: the `subject` of every manifest that can be a
referrer is read in every repository that is listed, whatever the rules
select, because ACR deletes a manifest's referrers with it and the plan must
show everything that will disappear (policy.md §4). A referrer no rule
selects is still deleted by the registry when its subject goes, and a tagged
referrer is a dependent, not an image, so no rule may match it. Why content
reads and not the OCI referrers API: docs/inventory.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retention.policy import RuleAction

if TYPE_CHECKING:
    from datetime import datetime

    from retention.inventory import Manifest
    from retention.policy import Policy

# Media types whose content can carry an OCI `subject`. Docker's manifest and manifest list have
# no such field, so ACR never deletes them as referrers; a manifest listed without a media type
# is read too, rather than guessed at.
SUBJECT_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    }
)


def can_be_referrer(manifest: Manifest) -> bool:
    """Whether this manifest's content may name a subject."""
    return manifest.media_type is None or manifest.media_type in SUBJECT_MEDIA_TYPES


class Needs:
    """Everything: what `snapshot` records, so that any later policy can be planned from it."""

    def lists(self, repository: str) -> bool:
        del repository
        return True

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        del repository, manifest
        return True

    def content(self, repository: str, manifest: Manifest) -> bool:
        """Whether to read the content of this manifest, to learn its subject."""
        del repository
        return can_be_referrer(manifest)


@dataclass(frozen=True)
class PolicyNeeds(Needs):
    """Only what planning this policy at `now` can depend on."""

    policy: Policy
    now: datetime

    def lists(self, repository: str) -> bool:
        # A repository no rule selects is untouched whatever it holds: not even listed.
        return any(rule.matches_repository(repository) for rule in self.policy.rules)

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        # Tag locks decide "locked" for anything a delete could reach (a signature deleted with
        # its image included, whatever the rules select), and lock rules compare tag
        # attributes; in a repository only keep rules select, they decide nothing.
        return bool(manifest.tags) and any(
            rule.action is not RuleAction.KEEP and rule.matches_repository(repository)
            for rule in self.policy.rules
        )


@dataclass(frozen=True)
class UnionNeeds(Needs):
    """What any of several policies needs: `diff` reads the registry once for two of them."""

    parts: tuple[Needs, ...]

    def lists(self, repository: str) -> bool:
        return any(part.lists(repository) for part in self.parts)

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        return any(part.tag_details(repository, manifest) for part in self.parts)

    def content(self, repository: str, manifest: Manifest) -> bool:
        return any(part.content(repository, manifest) for part in self.parts)
