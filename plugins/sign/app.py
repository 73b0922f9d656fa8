"""The component's exports (built by sdk/python/build.sh: `make plugins`)."""

from omni_sdk.component import export

from sign import Sign

WitWorld = export(Sign)
