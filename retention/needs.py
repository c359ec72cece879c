"""What the live inventory must fetch beyond the manifest listing, decided from the policy.

Pure. Listing a repository costs one request per page; tag attributes cost
one more listing, and a manifest's content one request per manifest. A big
registry can afford the first for everything and the others only where a
rule could act, so these answers are conservative: when in doubt, fetch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from retention.planner import could_match
from retention.policy import RuleAction

if TYPE_CHECKING:
    from datetime import datetime

    from retention.inventory import Manifest
    from retention.policy import Policy, Rule

# Media types whose content may carry an OCI `subject` (an index may too, but indexes are
# resolved through their references; an attachment index is rare and stays an image).
SUBJECT_MEDIA_TYPES = frozenset(
    {
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.artifact.manifest.v1+json",
    }
)


class Needs:
    """Everything: what `snapshot` records, so that any later policy can be planned from it."""

    def lists(self, repository: str) -> bool:
        del repository
        return True

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        del repository, manifest
        return True

    def content(self, repository: str, manifest: Manifest) -> bool:
        del repository
        return manifest.media_type in SUBJECT_MEDIA_TYPES and not manifest.tags


@dataclass(frozen=True)
class PolicyNeeds(Needs):
    """Only what planning this policy at `now` can depend on."""

    policy: Policy
    now: datetime

    def lists(self, repository: str) -> bool:
        # A repository no rule selects is untouched whatever it holds: not even listed.
        return any(rule.matches_repository(repository) for rule in self.policy.rules)

    def tag_details(self, repository: str, manifest: Manifest) -> bool:
        # Tag locks decide "locked" for delete rules, and lock rules compare tag attributes;
        # keep rules never need them.
        return bool(manifest.tags) and any(
            rule.action is not RuleAction.KEEP and self._could_match(rule, repository, manifest)
            for rule in self.policy.rules
        )

    def content(self, repository: str, manifest: Manifest) -> bool:
        # Only the content tells an untagged referrer (SBOM, signature) from an image. It matters
        # wherever any rule could select it: a delete rule would delete it while its subject
        # stays, and a `newest` rule would count it as an image and push a real image out.
        return super().content(repository, manifest) and any(
            self._could_match(rule, repository, manifest) for rule in self.policy.rules
        )

    def _could_match(self, rule: Rule, repository: str, manifest: Manifest) -> bool:
        return could_match(rule, repository, manifest, now=self.now, order_by=self.policy.settings.order_by)
