"""Development and test doubles of the servers mami talks to: Forge and a
chat model, each a real HTTP server with knobs to make it fail as the real
one does. Never imported by a production process (tests/test_app_boundary.py);
the embedded default starts them only when no real server is configured."""
