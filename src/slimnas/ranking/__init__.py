"""Channel importance and ranking: which channels a narrower arch of a trained model keeps."""

from slimnas.ranking.importance import CRITERIA, channel_importance
from slimnas.ranking.permute import Ranking, permutable_units, permute_channels, rank_channels
from slimnas.ranking.slots import ChannelSlot, channel_slots

__all__ = [
    "CRITERIA",
    "ChannelSlot",
    "Ranking",
    "channel_importance",
    "channel_slots",
    "permutable_units",
    "permute_channels",
    "rank_channels",
]
