"""benchsync: collect BRL-CAD benchmark logs exactly once into a database and a gzip store."""

__version__ = "0.1.0"
