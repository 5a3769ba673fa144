"""Shared parts of the examples: the digits data, a compiled training loop, the plot.

The data is scikit-learn's bundled 8x8 digits (1797 images, no download). The loop is
what a PyTorch user writes; `graphc.compile` turns the step into one program.
"""
from __future__ import annotations

import argparse
import os

import numpy as np

import graphc as torch
from graphc import nn
from graphc.utils.data import DataLoader, TensorDataset, random_split


def parse_args(description, epochs, lr, batch_size=32):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", type=float, default=lr)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", default=None, help="where to save the curves (PNG)")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args()


def digits(image_shape, seed):
    """Train/test datasets of digits images shaped `image_shape`, pixel values in [0, 1]."""
    from sklearn.datasets import load_digits
    data = load_digits()
    x = torch.tensor((data.images / 16.0).astype(np.float32).reshape((-1,) + image_shape))
    y = torch.tensor(data.target.astype(np.int64))
    gen = torch.Generator().manual_seed(seed)
    return random_split(TensorDataset(x, y), (0.8, 0.2), generator=gen)


def accuracy(model, loader):
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in loader:
            correct += (model(x).argmax(1) == y).sum().item()
            total += y.shape[0]
    model.train()
    return correct / total


def train(model, train_set, test_set, args, name):
    from tqdm import tqdm
    torch.manual_seed(args.seed)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True,
                              drop_last=True, generator=torch.Generator().manual_seed(args.seed))
    test_loader = DataLoader(test_set, batch_size=256)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.epochs)
    loss_fn = nn.CrossEntropyLoss()

    @torch.compile
    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    history = {"loss": [], "test_acc": []}
    for epoch in range(args.epochs):
        losses = []
        bar = tqdm(train_loader, desc=f"{name} epoch {epoch + 1}/{args.epochs}",
                   disable=args.no_progress, leave=False)
        for x, y in bar:
            losses.append(step(x, y))
        epoch_loss = float(np.mean([l.item() for l in losses]))
        sched.step()
        acc = accuracy(model, test_loader)
        history["loss"].append(epoch_loss)
        history["test_acc"].append(acc)
        print(f"{name} epoch {epoch + 1:3d}  loss {epoch_loss:.4f}  test accuracy {acc:.4f}")
    print(f"{name}: final test accuracy {history['test_acc'][-1]:.4f}")
    save_plot(history, args.plot or os.path.join(os.path.dirname(__file__), f"{name}.png"),
              name)
    return history


def save_plot(history, path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax1 = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history["loss"]) + 1)
    ax1.plot(epochs, history["loss"], color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    ax2 = ax1.twinx()
    ax2.plot(epochs, history["test_acc"], color="tab:orange", label="test accuracy")
    ax2.set_ylabel("test accuracy", color="tab:orange")
    ax1.set_title(f"{title} on 8x8 digits (graphc)")
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=100)
    os.replace(tmp, path)
    plt.close(fig)
    print(f"saved curves to {path}")
