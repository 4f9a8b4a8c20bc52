"""pyinfra run configuration, executed by pyinfra before deploy.py."""

REQUIRE_PYINFRA_VERSION = "~=3.10"
