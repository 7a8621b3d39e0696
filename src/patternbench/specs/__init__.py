"""The model, as data: agents, agent files, patterns, topologies, faults, upgrade strategies,
the cases a run runs and the figures it reports. Nothing here builds objects or talks to a cluster."""
