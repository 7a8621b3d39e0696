"""Load: Locust in its own process (gevent never patches the pytest process), writing one
JSON line per request, and the orchestrator side that starts and stops it."""
