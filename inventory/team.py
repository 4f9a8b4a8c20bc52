"""An example team: pyinfra inventory/team.py deploy.py

Groups: laptops (Apple Silicon and Linux), gpu_workstations, airgapped (see group_data/)."""

laptops = [
    ("mac-ana.example.internal", {"developer_users": ["ana"]}),          # M3 Pro 36 GB
    ("mac-ben.example.internal", {"developer_users": ["ben"]}),          # M4 Max 128 GB
    ("tp-chen.example.internal", {"developer_users": ["chen"]}),         # Linux, 32 GB, no GPU
]

gpu_workstations = [
    ("ws-dana.example.internal", {"developer_users": ["dana"]}),         # RTX 4090 24 GB
    ("ws-shared.example.internal", {"developer_users": ["eli", "fay"],   # 2x RTX A5000
                                    "model_preferences": ["qwen3-coder:30b"]}),
]

airgapped = [
    ("lab-secure-01.example.internal", {"developer_users": ["gus"]}),   # RX 7800 XT 16 GB
]
