"""Small helpers every part of the package uses: atomic writes, argument checks, backend checks."""
