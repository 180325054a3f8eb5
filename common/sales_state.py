"""Placeholder replaced by the waiting room."""
def all_sale_counters(redis):
    return []
