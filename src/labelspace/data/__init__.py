"""Data layer: readers, label vocabularies, datasets, conversions and splits."""

from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.errors import DataFormatError
from labelspace.data.labels import LabelMatrix, LabelSet
from labelspace.data.readers import load

__all__ = [
    "DataFormatError",
    "LabelMatrix",
    "LabelSet",
    "LabeledDataset",
    "PairDataset",
    "TripletDataset",
    "load",
]
