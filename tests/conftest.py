"""Test-wide settings."""

import torch

# The models under test are tiny: on a shared 2-core machine, torch's thread pool costs far more than it saves.
torch.set_num_threads(1)
