"""opendrec: the operator command line."""
