"""Notices that reach people: the outbox's notices delivered to each tenant's endpoints,
e-mail over SMTP and signed webhooks, with retries, backoff and a delivery log
(migration 0022). Pure: signing, rendering, the retry policy; I/O: the channels, the
store (claims with SKIP LOCKED) and the worker the service runs."""
