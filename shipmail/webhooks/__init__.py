"""Webhooks: signed (Standard Webhooks) deliveries of events to the organisation's endpoints, with
retries through :mod:`shipmail.jobs`, attempts kept, replay and secret rotation."""
