"""pyinfra run configuration, executed by pyinfra before it connects to any host."""

from localcode import pyinfra_compat

REQUIRE_PYINFRA_VERSION = "~=3.10"

# Before connecting: a host that vanishes or hangs up fails alone, in one line, no traceback.
pyinfra_compat.install()
