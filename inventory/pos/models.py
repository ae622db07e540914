"""POS data. (Being written: store API keys, receipts, counts, transfers.)"""

__all__: list[str] = []
