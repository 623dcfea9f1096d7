"""The exchange of messages and the start of flows, apart from the HTTP routes that call them.

- starting.py  — start a declared pathway: resolve its parties, store its read-model row, start its workflow;
- receiving.py — an inbound message: store, correlate, confine, decide (one transaction);
- delivering.py — the signal to the workflow and the acknowledgement back (shared by the route and the relay);
- sending.py   — the core of the outbound activity: build once, store, POST.
"""
