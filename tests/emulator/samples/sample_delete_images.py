# ruff: noqa: T201 - a sample prints what it does
# Adapted from the Azure SDK for Python quickstart sample `sample_delete_images.py`
# (Azure/azure-sdk-for-python, sdk/containerregistry/azure-containerregistry/samples; MIT licence,
# Copyright (c) Microsoft Corporation). Reproduced from the published sample's flow; changed: the
# credential is the emulator's FakeCredential instead of the samples' DefaultAzureCredential helper,
# and `load_registry()` (an ARM image import) is left out because the test seeds the emulator.
"""
FILE: sample_delete_images.py

DESCRIPTION:
    This sample demonstrates deleting all but the most recent three images for each repository.

USAGE:
    python sample_delete_images.py

    This sample assumes your registry has at least one repository with more than three images.

    Set the environment variables with your own values before running the sample:
    1) CONTAINERREGISTRY_ENDPOINT - The URL of your Container Registry account
"""

import os

from azure.containerregistry import ArtifactManifestOrder, ContainerRegistryClient

from tests.emulator import FakeCredential


class DeleteImages:
    def __init__(self) -> None:
        self.endpoint = os.environ["CONTAINERREGISTRY_ENDPOINT"]
        self.credential = FakeCredential(os.environ.get("AAD_TOKEN", "fake-aad-token"))

    def delete_images(self) -> None:
        # [START list_repository_names]
        with ContainerRegistryClient(self.endpoint, self.credential) as client:
            for repository in client.list_repository_names():
                # [END list_repository_names]

                # [START list_manifest_properties]
                # Keep the three most recent images, delete everything else
                manifest_count = 0
                for manifest in client.list_manifest_properties(
                    repository, order_by=ArtifactManifestOrder.LAST_UPDATED_ON_DESCENDING
                ):
                    manifest_count += 1  # noqa: SIM113 - the sample's own counting
                    if manifest_count > 3:
                        # Make sure will have the permission to delete the manifest later
                        client.update_manifest_properties(
                            repository, manifest.digest, can_write=True, can_delete=True
                        )
                        print(f"Deleting {repository}:{manifest.digest}")
                        # [START delete_manifest]
                        client.delete_manifest(repository, manifest.digest)
                        # [END delete_manifest]
                # [END list_manifest_properties]


if __name__ == "__main__":
    sample = DeleteImages()
    sample.delete_images()
