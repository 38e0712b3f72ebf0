"""The fault-injecting test architecture (tests/fakes/fake_adapter.py) keeps the adapter contract too;
its faults are exercised by the supervisor's tests."""

from tests.contract import adapter_contract

TestContract = adapter_contract("fake", cancel_options={"sleep_s": 30})
