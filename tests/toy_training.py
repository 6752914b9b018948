"""A tiny model, data set and task for the Trainer tests (importable by subprocesses too)."""
import sys
import time

import torch
from torch import nn
from torch.utils.data import Dataset

from depthlib.train import Trainer, TrainConfig


class ToyNet(nn.Module):
    def __init__(self, dropout=True, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Dropout2d(0.2) if dropout else nn.Identity(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x):
        return self.body(x)


class ToySet(Dataset):
    """Deterministic images; a random horizontal flip draws from torch's RNG, like NYUDepth."""

    def __init__(self, n=24, size=8):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        image = torch.rand(3, self.size, self.size, generator=g)
        depth = image.mean(0, keepdim=True) * 2 + 1
        if torch.rand(()) < 0.5:
            image, depth = image.flip(-1), depth.flip(-1)
        return {"image": image, "depth": depth, "index": index}


class ToyTask:
    def __init__(self, delay=0.0, nan_at_step=None):
        self.delay, self.nan_at_step, self.calls = delay, nan_at_step, 0

    def loss(self, model, batch):
        self.calls += 1
        time.sleep(self.delay)
        error = (model(batch["image"]) - batch["depth"]) ** 2
        total = error.mean()
        if self.nan_at_step is not None and self.calls > self.nan_at_step:
            total = total * float("nan")
        return {"total": total, "mse": error.mean().detach()}


def make_trainer(out_dir, epochs=2, batch_size=4, dropout=True, delay=0.0, model_seed=0, **config):
    settings = TrainConfig(epochs=epochs, batch_size=batch_size, lr=1e-2, schedule="cosine", log_every=2,
                           progress=False, seed=7, **config)
    return Trainer(ToyNet(dropout, model_seed), ToySet(), ToyTask(delay), out_dir, settings)


if __name__ == "__main__":  # python toy_training.py OUT_DIR [checkpoint_every delay] (used by the SIGKILL test)
    out, every, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    make_trainer(out, epochs=2, delay=delay, checkpoint_every=every).fit()
