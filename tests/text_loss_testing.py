"""Inputs and tolerances shared by the text-loss parity tests (imported as `from text_loss_testing import ...`)."""

from __future__ import annotations

import torch

ANCHORS = [
    "the cat sat on the mat",
    "stocks fell sharply today",
    "i love this song so much",
    "the weather is cold and rainy",
    "she scored the winning goal",
    "how do i reset my password",
    "the train was late again",
    "fresh bread from the oven",
]
POSITIVES = [
    "a cat is sitting on a rug",
    "markets dropped at the close",
    "this track is my favourite",
    "it is chilly and wet outside",
    "her goal won the match",
    "steps to change a forgotten password",
    "my commute was delayed",
    "a warm loaf just baked",
]
NEGATIVES = [
    "a dog runs in the park",
    "the bakery sells fresh bread",
    "i hate waiting in line",
    "the desert is hot and dry",
    "he missed the penalty kick",
    "my password is very strong",
    "planes fly over the city",
    "the oven is broken",
]
NEGATIVES_2 = [
    "mats are sold at the store",
    "bonds rose slightly",
    "the concert was cancelled",
    "snow is forecast for sunday",
    "the referee blew the whistle",
    "how do i delete my account",
    "bicycles are cheaper than cars",
    "butter and jam on toast",
]
COLUMNS = [ANCHORS, POSITIVES, NEGATIVES, NEGATIVES_2]
LABELS = torch.tensor(
    [[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]],
    dtype=torch.float32,
)
TOL = {"rtol": 1e-5, "atol": 1e-5}


def assert_grad_close(mine: torch.Tensor, reference: torch.Tensor, name: str, atol: float = 1e-5) -> None:
    """Every entry within ``atol`` of the reference, scaled by the tensor's largest entry when that exceeds 1.

    Gradients sum over hundreds of tokens (and GIST divides by a temperature of 0.01), so float32
    rounding grows with the gradient's scale: the tolerance is absolute up to scale 1, relative above.
    """
    bound = atol * max(1.0, float(reference.abs().max()))
    torch.testing.assert_close(mine, reference, rtol=0, atol=bound, msg=lambda m: f"{name}: {m}")
