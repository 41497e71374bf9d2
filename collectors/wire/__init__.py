"""Wire captures read and matched to traces (see matcher.py); being split by concern."""

from tickscope.collectors.wire.matcher import *  # noqa: F403
