# ruff: noqa: T201 - a sample prints what it does
# Adapted from the Azure SDK for Python quickstart sample `sample_hello_world.py`
# (Azure/azure-sdk-for-python, sdk/containerregistry/azure-containerregistry/samples; MIT licence,
# Copyright (c) Microsoft Corporation). Reproduced from the published sample's flow; changed: the
# credential is the emulator's FakeCredential instead of the samples' DefaultAzureCredential helper,
# and `load_registry()` (an ARM image import) is left out because the test seeds the emulator.
"""
FILE: sample_hello_world.py

DESCRIPTION:
    This sample demonstrates creating a ContainerRegistryClient and iterating through the collection
    of repositories. It also deletes the repository "library/hello-world", after making sure every
    tagged image in it may be deleted.

USAGE:
    python sample_hello_world.py

    Set the environment variables with your own values before running the sample:
    1) CONTAINERREGISTRY_ENDPOINT - The URL of your Container Registry account
"""

import os

from azure.containerregistry import ContainerRegistryClient

from tests.emulator import FakeCredential


class HelloWorld:
    def __init__(self) -> None:
        self.endpoint = os.environ["CONTAINERREGISTRY_ENDPOINT"]
        self.credential = FakeCredential(os.environ.get("AAD_TOKEN", "fake-aad-token"))

    def basic_sample(self) -> None:
        # Instantiate an instance of ContainerRegistryClient
        # [START create_registry_client]
        with ContainerRegistryClient(self.endpoint, self.credential) as client:
            # [END create_registry_client]
            # Iterate through all the repositories
            for repository_name in client.list_repository_names():
                print(repository_name)
                if repository_name == "library/hello-world":
                    print("Tags of repository library/hello-world:")
                    for tag in client.list_tag_properties(repository_name):
                        print(tag.name)

                        # Make sure will have the permission to delete the repository later
                        client.update_manifest_properties(
                            repository_name, tag.name, can_write=True, can_delete=True
                        )

                    print("Deleting " + repository_name)
                    # [START delete_repository]
                    client.delete_repository(repository_name)
                    # [END delete_repository]


if __name__ == "__main__":
    sample = HelloWorld()
    sample.basic_sample()
