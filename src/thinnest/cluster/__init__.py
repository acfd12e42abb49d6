"""``thinnest cluster``: a multi-host topology on one machine (network namespaces)."""
