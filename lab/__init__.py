"""The lab: a fleet of test hosts (overlay roots, network namespaces, real systemd, real SSH)
and the control-side "internet" they may reach (a release mirror and an OCI model registry)."""
