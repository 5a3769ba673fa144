"""Train an LSTM that reads each 8x8 digit image row by row (8 steps of 8 pixels)."""
from _common import digits, parse_args, train

from graphc import nn


class RowLSTM(nn.Module):
    def __init__(self, hidden=64):
        super().__init__()
        self.lstm = nn.LSTM(input_size=8, hidden_size=hidden, batch_first=True)
        self.head = nn.Linear(hidden, 10)

    def forward(self, x):
        out, (h, c) = self.lstm(x)
        return self.head(h[-1])


def main():
    args = parse_args(__doc__, epochs=30, lr=5e-3)
    train_set, test_set = digits((8, 8), args.seed)
    train(RowLSTM(), train_set, test_set, args, "lstm")


if __name__ == "__main__":
    main()
