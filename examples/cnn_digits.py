"""Train a small CNN on scikit-learn's 8x8 digits with graphc."""
from _common import digits, parse_args, train

from graphc import nn


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),    # 16x4x4
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),   # 32x2x2
        )
        self.head = nn.Linear(32 * 2 * 2, 10)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def main():
    args = parse_args(__doc__, epochs=25, lr=3e-3)
    train_set, test_set = digits((1, 8, 8), args.seed)
    train(SmallCNN(), train_set, test_set, args, "cnn")


if __name__ == "__main__":
    main()
