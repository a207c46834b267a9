"""Units shared by the workflows and their simulators."""

__all__ = ["PF_DAY"]

#: FLOP in one PF-day (1e15 FLOP/s for a day).
PF_DAY = 8.64e19
