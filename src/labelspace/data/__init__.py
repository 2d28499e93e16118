"""Data layer: tables and label cells, readers, label vocabularies, datasets, conversions and splits."""

from labelspace.data.convert import (
    labeled_to_anchor_positive,
    labeled_to_pairs,
    labeled_to_triplets,
    triplets_to_pairs,
)
from labelspace.data.datasets import LabeledDataset, PairDataset, TripletDataset
from labelspace.data.errors import DataFormatError
from labelspace.data.label_cells import LabelWarning
from labelspace.data.labels import LabelMatrix, LabelSet
from labelspace.data.readers import load
from labelspace.data.split import stratified_split, stratified_split_indices
from labelspace.data.writers import save

__all__ = [
    "DataFormatError",
    "LabelMatrix",
    "LabelSet",
    "LabelWarning",
    "LabeledDataset",
    "PairDataset",
    "TripletDataset",
    "labeled_to_anchor_positive",
    "labeled_to_pairs",
    "labeled_to_triplets",
    "load",
    "save",
    "stratified_split",
    "stratified_split_indices",
    "triplets_to_pairs",
]
