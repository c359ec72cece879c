"""The SDK's quickstart samples, pointed at the emulator (see each file's header)."""
