"""The ``taskq`` command line (a thin layer over the library)."""
