"""Fixtures shared by all tests; the local-cluster ones live with the code that runs the cluster."""

pytest_plugins = ["localcluster.testing", "tests.scheduling"]
