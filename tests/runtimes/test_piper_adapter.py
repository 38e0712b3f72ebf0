"""Piper through the real supervisor, in its own real environment (its voice: the builtin ``joe``)."""

from tests.contract import adapter_contract

TestContract = adapter_contract("piper")
