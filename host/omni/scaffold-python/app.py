"""The component's exports: componentize-py builds the component from this module
(`@SDK@/python/build.sh . @TASK@.wasm`)."""

from omni_sdk.component import export

from @MODULE@ import @TYPE@

WitWorld = export(@TYPE@)
