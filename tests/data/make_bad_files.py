"""Regenerate the reader test corpus: tests/data/bad/ (one defect a file) and tests/data/good/.

Run ``python tests/data/make_bad_files.py``. Idempotent: every file is written from the bytes
below, and only when its content differs, so a second run changes nothing. The generated files
are committed too; ``tests/test_bad_files.py`` checks they still match this script.

Each bad file holds exactly one defect; the line and column each one must be reported at are
written down by hand in tests/test_bad_files.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BAD = HERE / "bad"
GOOD = HERE / "good"

GOEMOTIONS_LABELS = b"admiration\namusement\nanger\nneutral\n"

#: path relative to tests/data -> exact bytes
FILES: dict[str, bytes] = {
    # ---------------------------------------------------------------- structure of the file
    "bad/empty.csv": b"",
    "bad/header_only.csv": b"text,labels\n",
    "bad/duplicated_columns.csv": b"text,labels,text\nhello,a,again\n",
    "bad/missing_text_column.csv": b"review,labels\ngreat app,praise\nslow,performance\n",
    "bad/wrong_field_count.csv": b"text,labels\nfirst,a\nsecond,b,extra\nthird,c\n",
    "bad/unclosed_quote.csv": b'text,labels\nfine,a\n"never closed,b\nthird,c\n',
    # a quoted text spanning lines 2-4, then a bad row on line 6 (not 4: lines are physical)
    "bad/multiline_then_wrong_field_count.csv": (
        b'text,labels\n"first line\nsecond line\nthird line",a\nplain,b\nbroken\n'
    ),
    # invalid UTF-8 bytes in the middle of the text on line 3
    "bad/non_utf8.csv": b"text,labels\ncafe,a\nbad \xff\xfe bytes,b\nlast,c\n",
    # ... also inside a quoted field that holds the delimiter, in JSONL and in GoEmotions TSV
    "bad/non_utf8_quoted.csv": b'text,labels\nfine,a\n"a, b and \xff",b\n',
    "bad/non_utf8.jsonl": b'{"text": "fine", "labels": ["a"]}\n{"text": "bad \xff", "labels": ["b"]}\n',
    "bad/goemotions/non_utf8.tsv": b"so good\t0\tid1\nbad \xff here\t1\tid2\n",
    # the header is on line 3 after two blank lines, and the error must say so
    "bad/duplicated_columns_after_blank_lines.csv": b"\n\ntext,labels,text\nhello,a,again\n",
    "bad/malformed_json.jsonl": (
        b'{"text": "good", "labels": ["a"]}\n{"text": "bad", "labels": ["b"]\n{"text": "x", "labels": []}\n'
    ),
    "bad/not_an_object.jsonl": b'{"text": "good", "labels": ["a"]}\n["bad", ["b"]]\n',
    # ---------------------------------------------------------------- texts
    "bad/empty_text.csv": b"text,labels\ngood morning,a\n,b\n",
    "bad/null_text.jsonl": b'{"text": "fine", "labels": ["a"]}\n{"text": null, "labels": ["b"]}\n',
    # ---------------------------------------------------------------- labels columns
    "bad/unknown_label.tsv": b"text\tlabels\nhappy day\tjoy\nso cross\tjoy|angry\n",
    "bad/unknown_label.labels.txt": b"joy\nanger\nsadness\n",
    "bad/missing_labels_key.jsonl": (
        b'{"text": "one", "labels": ["a"]}\n{"text": "two", "labels": []}\n{"text": "three"}\n'
    ),
    "bad/null_labels.jsonl": b'{"text": "one", "labels": ["a"]}\n{"text": "two", "labels": null}\n',
    "bad/malformed_labels_json.csv": b'text,labels\nfine,"[""a""]"\nbroken,"[""a"", ""b"""\n',
    "bad/empty_label_name.csv": b"text,labels\nfine,a|b\ndouble bar,a||b\n",
    # ---------------------------------------------------------------- one 0/1 column per label
    "bad/nan_label_flag.csv": b"text,anger,joy\nfurious,1,0\nglad,0,\nmeh,0,0\n",
    "bad/label_flag_not_binary.csv": b"text,anger,joy\nfurious,1,0\nglad,0,2\n",
    "bad/no_binary_columns.csv": b"text,topic,stars\nnice,billing,5\nbad,bug,1\n",
    # ---------------------------------------------------------------- GoEmotions (headerless TSV)
    "bad/goemotions/labels.txt": GOEMOTIONS_LABELS,
    "bad/goemotions/non_integer_id.tsv": b"so good\t0\tid1\nwhat\t1,x\tid2\nok\t3\tid3\n",
    "bad/goemotions/out_of_range_id.tsv": b"so good\t0\tid1\nfunny\t1\tid2\nhmm\t1,4\tid3\n",
    "bad/goemotions/wrong_field_count.tsv": b"so good\t0\tid1\nno id here\t1\n",
    # ---------------------------------------------------------------- pairs and triplets
    "bad/score_out_of_range.csv": b"text1,text2,score\na cat,a kitten,0.9\na cat,a car,1.5\n",
    "bad/nan_score.csv": b"text1,text2,score\na cat,a kitten,NaN\n",
    "bad/empty_score.csv": b"text1,text2,score\na cat,a kitten,0.9\na cat,a car,\n",
    "bad/score_not_a_number.csv": b"text1,text2,score\na cat,a kitten,high\n",
    "bad/triplet_without_negative.csv": (b"anchor,positive,negative\nrefund?,money back,app crash\nslow app,laggy,\n"),
    "bad/triplet_no_negative_column.csv": b"anchor,positive\nrefund?,money back\n",
    # ---------------------------------------------------------------- good files: BOM, CRLF
    "good/plain.csv": b"text,labels\nrefund please,billing|refund\napp is slow,performance\n",
    "good/bom.csv": b"\xef\xbb\xbftext,labels\nrefund please,billing|refund\napp is slow,performance\n",
    "good/crlf.csv": b"text,labels\r\nrefund please,billing|refund\r\napp is slow,performance\r\n",
    "good/bom_crlf.csv": (b"\xef\xbb\xbftext,labels\r\nrefund please,billing|refund\r\napp is slow,performance\r\n"),
    "good/bom_crlf.tsv": (b"\xef\xbb\xbftext\tlabels\r\nrefund please\tbilling|refund\r\napp is slow\tperformance\r\n"),
    "good/bom_crlf.jsonl": (
        b'\xef\xbb\xbf{"text": "refund please", "labels": ["billing", "refund"]}\r\n'
        b'{"text": "app is slow", "labels": ["performance"]}\r\n'
    ),
    "good/goemotions_bom_crlf/labels.txt": b"\xef\xbb\xbfadmiration\r\namusement\r\nanger\r\nneutral\r\n",
    "good/goemotions_bom_crlf/train.tsv": b"\xef\xbb\xbfso good\t0\tid1\r\nlol\t1,3\tid2\r\n",
    # a quoted field with a CRLF inside, in a CRLF file: the error on line 5 must say line 5
    "good/bom_crlf_multiline.csv": (b'\xef\xbb\xbftext,labels\r\n"two\r\nlines",a\r\nplain,b\r\n'),
}

#: Parquet files: path -> columns (written with pandas; compared by content, not bytes)
PARQUET: dict[str, dict[str, list]] = {
    "bad/nan_text.parquet": {"text": ["fine", None, "also fine"], "labels": [["a"], ["b"], []]},
}


def write_parquet(path: Path, columns: dict[str, list]) -> bool:
    """Write ``columns`` as Parquet unless the file already holds the same table; True if written."""
    import pandas as pd

    frame = pd.DataFrame(columns)
    if path.exists():
        try:
            old = pd.read_parquet(path)
            if old.columns.tolist() == frame.columns.tolist() and all(
                [_plain(v) for v in old[c].tolist()] == [_plain(v) for v in frame[c].tolist()] for c in frame.columns
            ):
                return False
        except Exception:  # a damaged file is rewritten
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return True


def _plain(value: object) -> object:
    """Parquet list cells come back as numpy arrays and missing strings as None/NaN."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if value is None or (isinstance(value, float) and value != value):
        return None
    return value


def main() -> int:
    written = []
    for relative, content in FILES.items():
        path = HERE / relative
        if path.exists() and path.read_bytes() == content:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(relative)
    for relative, columns in PARQUET.items():
        if write_parquet(HERE / relative, columns):
            written.append(relative)
    print(f"{len(written)} file(s) written" + (": " + ", ".join(written) if written else " (corpus up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
