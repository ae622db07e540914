"""The stores' point-of-sale integration: store-bound API keys, sales sync, voids, counts, receipts, transfers."""
