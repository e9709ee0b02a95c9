"""MAP solvers. Each works on the reduced MAX network (see :func:`spnkit.reduce`)."""
