#!/usr/bin/env python3
"""Write the files PyTorch's own `torch.save` makes of a state_dict, which Backprop does not read
(it reads state_dicts as safetensors) but must recognise and name (SafetensorsTests.swift). Run
once where torch is installed (CI does not have it; the files are committed):

    python3 Tests/BackpropTests/Fixtures/make_torch_save_fixtures.py

Files
-----
torch_save_state_dict.pt      torch.save(nn.Linear(2, 2).state_dict()): a zip archive (PyTorch >= 1.6)
torch_save_legacy.pth         the same with _use_new_zipfile_serialization=False: a pickle
"""

import os

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    torch.manual_seed(0)
    state = nn.Linear(2, 2).state_dict()
    torch.save(state, os.path.join(HERE, "torch_save_state_dict.pt"))
    torch.save(state, os.path.join(HERE, "torch_save_legacy.pth"), _use_new_zipfile_serialization=False)
    print("wrote torch_save_state_dict.pt, torch_save_legacy.pth")


if __name__ == "__main__":
    main()
