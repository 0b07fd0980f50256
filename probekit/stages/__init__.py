"""The pipeline's stages, one folder each in the checkout: extract/, classify/ and analysis/ (the report).

They are mapped here by pyproject.toml's package-dir, so they install under ``probekit``
and never as generic top-level names. A stage imports probekit.core and earlier stages only.
"""
