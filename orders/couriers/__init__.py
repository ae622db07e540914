"""Couriers: dispatching packed delivery fulfillments to a courier provider, the providers' signed webhooks, the
built-in local courier, and the SLA watch. Models live under the `orders` app label (imported at the end of
orders/models.py); every write goes through orders.couriers.services."""
