"""mflow: run DAGs of batch tasks described in files, with state kept in a queryable store."""

__version__ = "0.1.0"
