"""Remote endpoints: a vdevperf server runs the server half of tests for clients on other hosts.

protocol.py (frames, messages, handshake), token.py (the shared secret),
admission.py (data connections bound to a session), limits.py (what
connections share: handshake slots, back-off, the endpoint budget),
serving.py (the server's half of one test), session.py (one control
connection), server.py (the listener and its limits), client.py (the
client's side of a session).
"""
