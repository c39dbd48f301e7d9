"""Where a tenant's notices go: its notification endpoints (e-mail addresses, signed
webhooks) and the delivery log of each notice, over HTTP and the CLI. The delivery itself
runs in the service (softswitch.notify)."""
