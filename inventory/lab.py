"""pyinfra inventory of the running lab (`python -m lab up`): one host per lab host, reached
over real SSH with the lab's key and strict host-key checking.

Groups: online, airgapped, gpu, nvidia, amd, cpu_only (and `lab`, from this file's name).
The lab to read is LOCALCODE_LAB (default "lab")."""

import os

from lab.inventory import lab_groups

_groups = lab_groups(os.environ.get("LOCALCODE_LAB", "lab"))

online = _groups["online"]
airgapped = _groups["airgapped"]
gpu = _groups["gpu"]
nvidia = _groups["nvidia"]
amd = _groups["amd"]
cpu_only = _groups["cpu_only"]
