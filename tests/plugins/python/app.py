"""The component's exports (built by sdk/python/build.sh)."""

from omni_sdk.component import export

from fixture import Fixture

WitWorld = export(Fixture)
