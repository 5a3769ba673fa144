"""A training script in PyTorch's documentation style gives PyTorch's numbers.

The same script body runs twice, once with `import torch` and once with
`import graphc as torch`: a Sequential MLP inside a custom Module whose forward takes two
arguments, AdamW, LinearLR then ReduceLROnPlateau, a Dataset returning dicts,
random_split((.8, .2)) and DataLoader(batch_size=32). Weights start equal (copied through
state_dict); the split and the batch order are taken from graphc's run so both sides see
the same batches, since the two libraries' random streams differ by design.
"""
import numpy as np
import pytest

import graphc

torch = pytest.importorskip("torch")


def script(T, data_x, data_y, split_indices, order_per_epoch, init_state=None, epochs=4):
    nn = T.nn

    class DictDataset(T.utils.data.Dataset):
        def __init__(self, x, y):
            self.x, self.y = x, y

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"features": self.x[i], "extra": self.x[i, :4] * 0.5, "label": self.y[i]}

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 32),
                                      nn.GELU())
            self.side = nn.Linear(4, 32)
            self.head = nn.Linear(32, 3)

        def forward(self, features, extra):
            return self.head(self.body(features) + self.side(extra).tanh())

    ds = DictDataset(T.tensor(data_x), T.tensor(data_y))
    if split_indices is None:
        train_set, val_set = T.utils.data.random_split(
            ds, (0.8, 0.2), generator=T.Generator().manual_seed(0))
        split_indices = (list(train_set.indices), list(val_set.indices))
    else:
        train_set = T.utils.data.Subset(ds, split_indices[0])
        val_set = T.utils.data.Subset(ds, split_indices[1])
    model = Net()
    if init_state is not None:
        model.load_state_dict({k: T.tensor(v) for k, v in init_state.items()})
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    opt = T.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    warmup = T.optim.lr_scheduler.LinearLR(opt, start_factor=0.5, total_iters=2)
    plateau = T.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    log = []
    for epoch in range(epochs):
        model.train()
        order = order_per_epoch[epoch] if order_per_epoch else None
        sub = T.utils.data.Subset(train_set, order) if order is not None else train_set
        loader = T.utils.data.DataLoader(sub, batch_size=32, shuffle=False)
        for batch in loader:
            opt.zero_grad()
            loss = loss_fn(model(batch["features"], batch["extra"]), batch["label"])
            loss.backward()
            opt.step()
        model.eval()
        with T.no_grad():
            val = T.utils.data.DataLoader(val_set, batch_size=64)
            total = sum(loss_fn(model(b["features"], b["extra"]), b["label"]).item()
                        * len(b["label"]) for b in val) / len(val_set)
        if epoch < 2:
            warmup.step()
        else:
            plateau.step(total)
        log.append((loss.item(), total, opt.param_groups[0]["lr"]))
    return log, state, split_indices, {k: v.detach().numpy() for k, v in
                                       model.state_dict().items()}


def test_documentation_style_script_matches_pytorch():
    rs = np.random.RandomState(0)
    x = rs.randn(150, 16).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    orders = [list(rs.permutation(120)) for _ in range(4)]   # the "shuffle" of each epoch
    g_log, init, split, g_final = script(graphc, x, y, None, orders)
    assert [len(s) for s in split] == [120, 30]
    t_log, _, _, t_final = script(torch, x, y, split, orders, init_state=init)
    for (gl, gv, glr), (tl, tv, tlr) in zip(g_log, t_log):
        assert glr == pytest.approx(tlr, rel=1e-12)
        assert gl == pytest.approx(tl, rel=2e-4)
        assert gv == pytest.approx(tv, rel=2e-4)
    for k in t_final:
        np.testing.assert_allclose(g_final[k], t_final[k], rtol=1e-3, atol=1e-5)


def test_shuffled_loader_trains_the_same_script():
    rs = np.random.RandomState(1)
    x = rs.randn(64, 16).astype(np.float32)
    y = rs.randint(0, 3, 64)
    graphc.manual_seed(0)
    ds = graphc.utils.data.TensorDataset(graphc.tensor(x), graphc.tensor(y))
    seen = []
    for xb, yb in graphc.utils.data.DataLoader(ds, batch_size=32, shuffle=True):
        seen.append(yb.numpy())
    assert sorted(np.concatenate(seen).tolist()) == sorted(y.tolist())
