"""Watchers and samplers that read the cluster while an experiment runs."""
