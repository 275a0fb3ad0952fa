"""Search spaces: units, archs, and their discovery by tracing."""

from slimnas.space.space import Layer, Space, TensorRecord
from slimnas.space.trace import trace
from slimnas.space.units import Arch, ChannelUnit, DepthUnit, OpUnit

__all__ = ["Arch", "ChannelUnit", "DepthUnit", "Layer", "OpUnit", "Space", "TensorRecord", "trace"]
