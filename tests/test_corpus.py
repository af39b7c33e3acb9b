"""Corpora: Parquet files, folders and globs, and the id / text / text_pair columns named by the user."""

from __future__ import annotations

import json

import pytest

from erpack.corpus import check_corpus, iter_corpus
from erpack.errors import InputError

pa = pytest.importorskip("pyarrow", reason="the `scale` extra installs pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def write_parquet(path, **columns):
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_with_named_columns(tmp_path):
    f = write_parquet(tmp_path / "c.parquet", doc=[7, 8], body=["A good film.", "A bad one."], q=["Why?", "How?"])
    docs = list(iter_corpus(str(f), id_column="doc", text_column="body", text_pair_column="q"))
    assert [(d.id, d.text, d.text_pair) for d in docs] == [("7", "A good film.", "Why?"), ("8", "A bad one.", "How?")]
    assert docs[1].where == f"{f}:row 2"
    assert check_corpus(str(f), id_column="doc", text_column="body").documents == 2


def test_default_columns_and_an_optional_pair(tmp_path):
    f = write_parquet(tmp_path / "c.parquet", id=["a", "b"], text=["x y", "z"], text_pair=["p", None])
    assert [(d.id, d.text_pair) for d in iter_corpus(str(f))] == [("a", "p"), ("b", None)]


@pytest.mark.parametrize("kwargs, message", [
    ({}, r"c.parquet: no column 'id' for ids \(--id-column\); the file has columns \['doc', 'body'\]"),
    ({"id_column": "doc"}, r"c.parquet: no column 'text' for texts; pass --text-column"),
    ({"id_column": "doc", "text_column": "txt"}, r"c.parquet: no column 'txt' for texts \(--text-column\)"),
    ({"id_column": "doc", "text_column": "body", "text_pair_column": "q"},
     r"c.parquet: no column 'q' for second texts \(--text-pair-column\)"),
])
def test_a_missing_column_names_the_file_and_the_column(tmp_path, kwargs, message):
    f = write_parquet(tmp_path / "c.parquet", doc=["a"], body=["x"])
    with pytest.raises(InputError, match=message):
        list(iter_corpus(str(f), **kwargs))


def test_bad_parquet_values_name_the_row(tmp_path):
    f = write_parquet(tmp_path / "c.parquet", id=["a", "b", "c"], text=["x", None, "z"])
    with pytest.raises(InputError, match=r"c.parquet:row 2: document 'b' has no `text` string"):
        list(iter_corpus(str(f)))
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"bad.parquet: not a readable Parquet file"):
        list(iter_corpus(str(tmp_path / "bad.parquet")))


def test_jsonl_and_csv_take_the_columns_too(tmp_path):
    (tmp_path / "c.jsonl").write_text(json.dumps({"k": "a", "body": "x", "q": "y"}) + "\n")
    [doc] = iter_corpus(str(tmp_path / "c.jsonl"), id_column="k", text_column="body", text_pair_column="q")
    assert (doc.id, doc.text, doc.text_pair) == ("a", "x", "y")
    with pytest.raises(InputError, match=r"c.jsonl:1: document 'a' has no `text` string"):
        list(iter_corpus(str(tmp_path / "c.jsonl"), id_column="k"))
    (tmp_path / "c.csv").write_text("k,body\na,x\n")
    assert [d.text for d in iter_corpus(str(tmp_path / "c.csv"), id_column="k", text_column="body")] == ["x"]
    with pytest.raises(InputError, match=r"c.csv: no column 'text' for texts; pass --text-column NAME"):
        list(iter_corpus(str(tmp_path / "c.csv"), id_column="k"))


def test_folders_and_globs_read_their_files_in_name_order(tmp_path):
    (tmp_path / "parts").mkdir()
    write_parquet(tmp_path / "parts" / "b.parquet", id=["3"], text=["z"])
    write_parquet(tmp_path / "parts" / "a.parquet", id=["1", "2"], text=["x", "y"])
    assert [d.id for d in iter_corpus(str(tmp_path / "parts"))] == ["1", "2", "3"]
    assert [d.id for d in iter_corpus(str(tmp_path / "parts" / "b*.parquet"))] == ["3"]
    (tmp_path / "parts" / "c.jsonl").write_text('{"id": "4", "text": "w"}\n')
    with pytest.raises(InputError, match=r"several formats"):
        list(iter_corpus(str(tmp_path / "parts")))
    with pytest.raises(InputError, match=r"holds no corpus files"):
        list(iter_corpus(str(tmp_path / "nothing-*.parquet")))
    (tmp_path / "dup").mkdir()
    write_parquet(tmp_path / "dup" / "a.parquet", id=["1"], text=["x"])
    write_parquet(tmp_path / "dup" / "b.parquet", id=["1"], text=["again"])
    with pytest.raises(InputError, match=r"b.parquet:row 1: id '1' already used at .*a.parquet:row 1"):
        check_corpus(str(tmp_path / "dup"))


def test_a_corpus_at_a_url_is_read_through_fsspec(tmp_path):
    """memory:// stands for any fsspec URL (s3:// in tests/cluster/test_encode_url.py): a file, a folder,
    a glob; messages name the URL and the line."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    root = "memory://corpus-url-test"
    fs.pipe_file(f"{root}/a/1.jsonl", b'{"id": "x", "text": "one"}\n{"id": "y", "text": "two"}\n')
    fs.pipe_file(f"{root}/a/2.jsonl", b'{"id": "z", "text": "three"}\n')
    fs.pipe_file(f"{root}/b.csv", b"text\nfirst\nsecond\n")
    fs.pipe_file(f"{root}/bad.jsonl", b'{"id": "x", "text": "one"}\n{"id": 1.5, "text": "two"}\n')
    assert [d.id for d in iter_corpus(f"{root}/a")] == ["x", "y", "z"]
    assert [d.id for d in iter_corpus(f"{root}/a/*.jsonl")] == ["x", "y", "z"]
    assert [d.id for d in iter_corpus(f"{root}/a/2.jsonl")] == ["z"]
    assert [(d.id, d.where) for d in iter_corpus(f"{root}/b.csv")] == [("b:0", f"{root}/b.csv:2"),
                                                                          ("b:1", f"{root}/b.csv:3")]
    assert "b:0, b:1" in check_corpus(f"{root}/b.csv").warnings[0]
    with pytest.raises(InputError, match=rf"{root}/bad.jsonl:2: `id` must be a string or an integer"):
        list(iter_corpus(f"{root}/bad.jsonl"))
    with pytest.raises(InputError, match=rf"corpus {root}/nothing.jsonl does not exist"):
        list(iter_corpus(f"{root}/nothing.jsonl"))
    with pytest.raises(InputError, match="several formats"):
        list(iter_corpus(root))
