# Adapted from the Azure SDK for Python quickstart sample `sample_set_image_properties.py`
# (Azure/azure-sdk-for-python, sdk/containerregistry/azure-containerregistry/samples; MIT licence,
# Copyright (c) Microsoft Corporation). Reproduced from the published sample's flow; changed: the
# credential is the emulator's FakeCredential instead of the samples' DefaultAzureCredential helper,
# and `load_registry()` (an ARM image import) is left out because the test seeds the emulator.
"""
FILE: sample_set_image_properties.py

DESCRIPTION:
    This sample demonstrates setting an image's properties on the tag so it can't be overwritten
    during a lengthy deployment.

USAGE:
    python sample_set_image_properties.py

    Set the environment variables with your own values before running the sample:
    1) CONTAINERREGISTRY_ENDPOINT - The URL of your Container Registry account
"""

import os

from azure.containerregistry import ContainerRegistryClient

from tests.emulator import FakeCredential


class SetImageProperties:
    def __init__(self) -> None:
        self.endpoint = os.environ["CONTAINERREGISTRY_ENDPOINT"]
        self.credential = FakeCredential(os.environ.get("AAD_TOKEN", "fake-aad-token"))

    def set_image_properties(self) -> None:
        # Instantiate an instance of ContainerRegistryClient
        with ContainerRegistryClient(self.endpoint, self.credential) as client:
            # Set permissions on image "library/hello-world:v1"
            client.update_manifest_properties("library/hello-world", "v1", can_write=False, can_delete=False)
            # After this update, if someone were to push an update to "<registry endpoint>/library/hello-world:v1",
            # it would fail. It's worth noting that if this image also had another tag, such as "latest",
            # and that tag did not have permissions set to prevent reads or deletes, the image could still be
            # overwritten. For example, if someone were to push an update to "<registry endpoint>/hello-world:latest"
            # (which references the same image), it would succeed.


if __name__ == "__main__":
    sample = SetImageProperties()
    sample.set_image_properties()
